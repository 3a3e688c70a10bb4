"""Where the viewer finds studies: the local archive, or a DICOMweb PACS with a local cache.

Both adapters answer the searches prior discovery needs (``search_studies(patient_id=...)``,
``search_series(study_uid)``), a free-text search for the page, and the local files of a
series. A PACS series is retrieved into a local archive first (one streamed request, resumed
when cut), so the viewer and the plan read the same files.
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path
from typing import Protocol

from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.dicomweb import DicomWebClient
from MSKPriorsLib.records import SeriesRecord, StudyRecord, newest_first
from MSKPriorsLib.retrieval import retrieve_into_archive
from MSKPriorsLib.servers import resolve_server

logger = logging.getLogger(__name__)


class ViewerSource(Protocol):
    """What the viewer needs from a place that holds studies."""

    name: str
    archive: LocalArchive
    pacs: str | None

    def search(self, text: str) -> list[StudyRecord]:
        """Studies whose PatientID, patient name or accession number matches ``text``.

        ``*`` and ``?`` are wildcards; text without them matches anywhere in the value. The
        studies are listed newest first.
        """
        ...

    def study(self, study_uid: str) -> StudyRecord:
        """One study by its StudyInstanceUID."""
        ...

    def search_studies(self, *, patient_id: str) -> list[StudyRecord]:
        """Studies with exactly this PatientID (for prior discovery)."""
        ...

    def search_series(self, study_uid: str) -> list[SeriesRecord]:
        """The series of one study."""
        ...

    def series_files(self, series: SeriesRecord) -> list[Path]:
        """Local DICOM files of one series (retrieved first when the source is remote)."""
        ...


#: Characters a search text may not hold: the DICOM value separator (a backslash would make
#: a QIDO-RS filter a list of values) and control characters.
REFUSED_SEARCH_CHARACTERS = "\\" + "".join(chr(code) for code in range(32)) + chr(127)


def search_pattern(text: str) -> str:
    """The pattern of a search text: as typed with wildcards, else ``*text*``.

    Raises
    ------
    ValueError
        When the text holds a backslash or a control character.
    """
    text = text.strip()
    if any(c in REFUSED_SEARCH_CHARACTERS for c in text):
        raise ValueError("Search text may not hold a backslash or control characters.")
    if not text or any(c in text for c in "*?"):
        return text
    return f"*{text}*"


def matches(pattern: str, value: str) -> bool:
    """Whether a value matches a search pattern (``*`` and ``?``), ignoring case."""
    return fnmatch.fnmatchcase(value.lower(), pattern.lower().replace("[", "[[]"))


class ArchiveSource:
    """The local archive (``mskwb fetch`` / ``mskwb import`` fill it).

    Parameters
    ----------
    folder
        The archive folder; it must hold an archive already (nothing is created in it).

    Raises
    ------
    NotAnArchiveError
        When the folder is missing or is not an archive.
    """

    def __init__(self, folder: Path) -> None:
        self.archive = LocalArchive.open_existing(Path(folder))
        self.name = "archive"
        self.pacs: str | None = None

    def search(self, text: str) -> list[StudyRecord]:
        """Archived studies whose PatientID, name or accession matches ``text``."""
        pattern = search_pattern(text)
        studies = self.archive.search_studies()
        if not pattern:
            return studies
        return [
            s
            for s in studies
            if any(
                matches(pattern, value)
                for value in (s.patient.patient_id, s.patient.name, s.accession_number)
            )
        ]

    def study(self, study_uid: str) -> StudyRecord:
        """One archived study."""
        found = self.archive.search_studies(study_uid=study_uid)
        if not found:
            raise KeyError(f"study {study_uid} is not in the archive {self.archive.folder}")
        return found[0]

    def search_studies(self, *, patient_id: str) -> list[StudyRecord]:
        """Archived studies with exactly this PatientID."""
        return self.archive.search_studies(patient_id=patient_id)

    def search_series(self, study_uid: str) -> list[SeriesRecord]:
        """Archived series of a study."""
        return self.archive.search_series(study_uid)

    def series_files(self, series: SeriesRecord) -> list[Path]:
        """Archived files of a series."""
        files = self.archive.instance_paths(series.series_uid)
        if not files:
            raise KeyError(f"series {series.series_uid} has no files in the archive")
        return files


class PacsSource:
    """A DICOMweb PACS searched with QIDO-RS; series retrieved into a local archive.

    Parameters
    ----------
    name_or_url
        A configured server name or a DICOMweb URL (credentials from the environment).
    cache
        Archive folder that receives retrieved series (created).
    """

    def __init__(self, name_or_url: str, cache: Path) -> None:
        self.server = resolve_server(name_or_url)
        self.name = self.server.name
        self.pacs: str | None = name_or_url
        self.client = DicomWebClient(self.server)
        self.archive = LocalArchive(Path(cache))

    def search(self, text: str) -> list[StudyRecord]:
        """Studies whose PatientID, name or accession matches ``text`` on the PACS, newest first.

        QIDO-RS has no "any of these attributes" search: one search is sent per attribute
        (with the QIDO-RS wildcards) and the answers are merged.
        """
        pattern = search_pattern(text)
        if not pattern:
            return newest_first(self.client.search_studies())
        found: list[StudyRecord] = []
        found += self.client.search_studies(patient_id=pattern)
        # Orthanc matches no name pattern that holds the component separator ``^``; a
        # single-character wildcard in its place finds them, and the same match as the
        # archive's then keeps only the studies the text names.
        by_name = self.client.search_studies(patient_name=pattern.replace("^", "?"))
        found += [s for s in by_name if matches(pattern, s.patient.name)]
        found += self.client.search_studies(accession_number=pattern)
        return newest_first(found)

    def study(self, study_uid: str) -> StudyRecord:
        """One study by UID."""
        found = self.client.search_studies(study_uid=study_uid)
        if not found:
            raise KeyError(f"study {study_uid} is not on the PACS {self.name}")
        return found[0]

    def search_studies(self, *, patient_id: str) -> list[StudyRecord]:
        """Studies with exactly this PatientID on the PACS."""
        return [
            s
            for s in self.client.search_studies(patient_id=patient_id)
            if s.patient.patient_id == patient_id
        ]

    def search_series(self, study_uid: str) -> list[SeriesRecord]:
        """The series of one study, by series number."""
        return sorted(self.client.search_series(study_uid), key=lambda s: s.series_number)

    def series_files(self, series: SeriesRecord) -> list[Path]:
        """Retrieve a series into the cache archive (what it lacks only) and list its files."""
        result = retrieve_into_archive(self.client, self.archive, [series])
        if result.failures:
            raise OSError("; ".join(result.failures))
        files = self.archive.instance_paths(series.series_uid)
        if not files:
            raise KeyError(f"the PACS {self.name} returned no instances of {series.series_uid}")
        logger.info("series %s: %d files in the cache", series.series_uid, len(files))
        return files
