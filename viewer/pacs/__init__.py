"""Work with a PACS (Qt-free): verify, query, retrieve into a study cache, send; over DIMSE (pynetdicom, optional
TLS) or DICOMweb (QIDO-RS/WADO-RS/STOW-RS). The viewer's PACS window and ``brainsr-pacs`` both sit on ``service``.

- ``nodes``: a configured node (``Node``) and where the user's list is kept
- ``models``: ``Query``, ``StudyInfo``/``SeriesInfo``, ``TransferReport``
- ``dimse`` / ``web``: the two transports, one interface (echo, find, find_series, find_instances, fetch, send)
- ``receive``: checks and stores received instances; a series folder appears only when complete
- ``cache``: the study cache (0700, quota, list, clear); ``audit``: the audit log (UIDs and counts only)
- ``service``: echo / find / retrieve / retrieve_to_cache / send; ``cli``: ``brainsr-pacs``
- ``orthanc``: a throwaway local Orthanc for tests, the demo and the benchmark
"""
from .errors import Cancelled, PacsError
from .models import FindResult, Query, SeriesInfo, StudyInfo, TransferReport
from .nodes import Node

__all__ = ["Cancelled", "FindResult", "Node", "PacsError", "Query", "SeriesInfo", "StudyInfo", "TransferReport"]
