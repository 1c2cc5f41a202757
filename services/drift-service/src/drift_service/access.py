"""The access log of drift reports: who read which report, never its content.

Reports hold applicant-derived values (feature distributions, scores of the window's applicants).
Every read of a report, over the HTML report server or ``GetDriftReport`` / ``ListDriftReports``
(and the reports ``ComputeDrift`` returns), is one JSON log line on the logger
``drift_service.access`` (INFO), written by the kit's ``creditrisk_kit.access_log.record_access``:
fields ``subject``, ``via`` (``api_key``, ``jwt``, ``auth_disabled``), ``method`` (``GET
/reports/{report_id}.html``, ``ComputeDrift``, ``GetDriftReport``, ``ListDriftReports``),
``report_ids`` (list) with ``report_ids_count``, and ``outcome`` (``OK`` or the status name), plus
the trace id of the kit's logging. Calls refused before they read
anything (401, 403) are not in it; the kit counts them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from creditrisk_kit.access_log import record_access
from creditrisk_kit.auth import ANONYMOUS, Principal

LOGGER = logging.getLogger("drift_service.access")


def log_read(
    principal: Principal | None, method: str, report_ids: Sequence[str], outcome: str = "OK"
) -> None:
    """One access record (see the module docstring; the kit's ``record_access``, ids under
    ``report_ids``); ``principal`` None: authentication disabled."""
    record_access(LOGGER, method, principal or ANONYMOUS, report_ids, outcome, ids_field="report_ids")
