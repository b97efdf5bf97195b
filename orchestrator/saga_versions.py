"""Which saga body runs which transfer: every version this code carries, and where each is sent.

A transfer starts on one version and finishes on it. The version is kept
twice by the store: in the root promise's task data (the SDK looks the body
up by name and version there, on every replay) and in the promise's target,
a workers' group of the version's own (:func:`group_for`). Only workers that
carry a version join its group, so the store hands a transfer only to a
worker that has its code: one that lacks it never sees it, and never
replays it with other code.

Version 1's group is the plain ``WORKER_GROUP``, so transfers started before
versions existed (all of them version 1) keep their workers.

- ``SAGA_VERSIONS`` (a worker's): the versions it carries, comma-separated;
  default every version this code has.
- ``SAGA_VERSION`` (whoever starts transfers): the version new transfers
  start on; default the newest. During a rolling upgrade, pin it to the
  old version until workers with the new one are up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from envsettings import SettingsError
from orchestrator import saga, saga_v1
from orchestrator.settings import Settings

SagaBody = Callable[..., Awaitable[dict[str, Any]]]

#: Every version of the saga this code has, oldest first.
SAGAS: Mapping[int, SagaBody] = {
    saga_v1.VERSION: saga_v1.transfer,
    saga.SAGA_VERSION: saga.transfer,
}

#: What new transfers start on unless ``SAGA_VERSION`` says otherwise.
NEWEST = max(SAGAS)


def group_for(group: str, version: int) -> str:
    """The workers' group that runs ``version``: ``group`` itself for version 1, else ``group-vN``."""
    return group if version == 1 else f"{group}-v{version}"


def carried(settings: Settings) -> dict[int, SagaBody]:
    """The bodies this process carries (``SAGA_VERSIONS``; default all), by version."""
    versions = settings.saga_versions or tuple(SAGAS)
    _check_known("SAGA_VERSIONS", versions)
    return {version: SAGAS[version] for version in sorted(versions)}


def starting_version(settings: Settings) -> int:
    """The version a transfer started now runs on (``SAGA_VERSION``; default the newest).

    With the embedded store this process runs what it starts, so the version
    must also be one it carries.
    """
    version = settings.saga_version or NEWEST
    _check_known("SAGA_VERSION", (version,))
    if not settings.served and version not in carried(settings):
        raise SettingsError(
            "SAGA_VERSION",
            f"is {version}, which this process does not carry (SAGA_VERSIONS): with the "
            "embedded store the process that starts a transfer runs it",
        )
    return version


def _check_known(variable: str, versions: tuple[int, ...]) -> None:
    unknown = sorted(set(versions) - set(SAGAS))
    if unknown:
        have = ", ".join(str(v) for v in SAGAS)
        raise SettingsError(
            variable,
            f"names saga version {', '.join(map(str, unknown))}, which this code does not "
            f"have (it has {have})",
        )
