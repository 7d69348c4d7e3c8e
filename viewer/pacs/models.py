"""What a query asks and what it finds: plain dataclasses shared by the DIMSE and DICOMweb transports."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

_DATE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def valid_uid(value: object) -> bool:
    """A UID safe to use as a file name: digits and dots, at most 64 characters."""
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(UID_RE.match(value))


@dataclass(frozen=True)
class Query:
    """Study-level filters. Patient name and description take DICOM wildcards (``*``, ``?``); a study date is
    ``YYYYMMDD`` or a range ``YYYYMMDD-YYYYMMDD`` (either end may be left open). ``limit`` caps the studies kept."""

    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    modality: str = ""
    accession: str = ""
    description: str = ""
    study_uid: str = ""
    limit: int = 100

    def __post_init__(self) -> None:
        if self.study_date and not _DATE.match(self.study_date):
            raise ValueError(f"study date {self.study_date!r}: expected YYYYMMDD or YYYYMMDD-YYYYMMDD")
        if self.study_uid and not valid_uid(self.study_uid):
            raise ValueError(f"study UID {self.study_uid!r} is not a DICOM UID")
        if self.limit < 1:
            raise ValueError("the result limit must be at least 1")


@dataclass
class SeriesInfo:
    series_uid: str
    modality: str = ""
    description: str = ""
    number: int | None = None
    n_instances: int | None = None

    def to_json(self) -> dict[str, object]:
        return {"SeriesInstanceUID": self.series_uid, "Modality": self.modality,
                "SeriesDescription": self.description, "SeriesNumber": self.number,
                "NumberOfSeriesRelatedInstances": self.n_instances}


@dataclass
class StudyInfo:
    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""
    study_date: str = ""
    description: str = ""
    accession: str = ""
    modalities: list[str] = field(default_factory=list)
    n_series: int | None = None
    n_instances: int | None = None
    series: list[SeriesInfo] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"StudyInstanceUID": self.study_uid, "PatientID": self.patient_id, "PatientName": self.patient_name,
                "PatientBirthDate": self.birth_date, "StudyDate": self.study_date,
                "StudyDescription": self.description, "AccessionNumber": self.accession,
                "ModalitiesInStudy": list(self.modalities), "NumberOfStudyRelatedSeries": self.n_series,
                "NumberOfStudyRelatedInstances": self.n_instances, "series": [s.to_json() for s in self.series]}


@dataclass
class FindResult:
    studies: list[StudyInfo]
    truncated: bool = False  # more studies matched than the limit


@dataclass
class TransferReport:
    """What a retrieve or send did: counts and UIDs only (never patient names)."""

    node: str
    action: str  # "get", "move", "send"
    study_uids: list[str] = field(default_factory=list)
    series_uids: list[str] = field(default_factory=list)
    expected: int = 0
    done: int = 0  # received (or sent) in this run
    skipped: int = 0  # already present (retrieve) or already on the server (send: counted in done too)
    failed: int = 0
    warnings: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return asdict(self)
