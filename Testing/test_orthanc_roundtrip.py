"""The real Orthanc fixture: store a real MR series, find it, and get the same pixels back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_auth

from mskworkbench.local_orthanc import LocalOrthanc

pytestmark = pytest.mark.pacs


def _client(orthanc: LocalOrthanc, password: str | None = None) -> DICOMwebClient:
    session = create_session_from_auth(
        requests.auth.HTTPBasicAuth(orthanc.username, password or orthanc.password)
    )
    return DICOMwebClient(url=orthanc.dicomweb_url, session=session)


def test_stow_qido_wado_round_trip_of_a_real_series(
    empty_orthanc: LocalOrthanc, shared_data: Path
) -> None:
    files = sorted((shared_data / "pacsman" / "mr_head").glob("*.dcm"))[:16]
    datasets = [pydicom.dcmread(path) for path in files]
    client = _client(empty_orthanc)

    client.store_instances(datasets)
    found = client.search_for_series(
        search_filters={"SeriesInstanceUID": datasets[0].SeriesInstanceUID}
    )
    instances = client.search_for_instances(
        study_instance_uid=datasets[0].StudyInstanceUID,
        series_instance_uid=datasets[0].SeriesInstanceUID,
    )
    original = datasets[5]
    retrieved = client.retrieve_instance(
        original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID
    )

    assert len(found) == 1
    assert len(instances) == len(files)
    assert retrieved.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(retrieved.pixel_array, original.pixel_array)


def test_orthanc_refuses_wrong_credentials(orthanc: LocalOrthanc) -> None:
    client = _client(orthanc, password="wrong")

    with pytest.raises(requests.HTTPError) as raised:
        client.search_for_studies()

    assert raised.value.response.status_code == 401


def test_a_port_in_use_is_refused_not_taken_for_our_server(
    orthanc: LocalOrthanc, tmp_path: Path
) -> None:
    second = LocalOrthanc(tmp_path / "second", http_port=orthanc.http_port)

    with pytest.raises(RuntimeError, match=f"port {orthanc.http_port} .* already in use"):
        second.start()
    assert not second.is_running()
