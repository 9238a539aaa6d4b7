"""load_measurement reads the committed JSON files and names what is wrong when it cannot."""

import io
import json

import pytest

from vae_course.errors import DataError
from vae_course.tools.measurements import MEASUREMENTS, load_measurement


def test_reads_the_committed_file_as_json_does():
    path = MEASUREMENTS / "spread" / "ch6_seed0.json"
    assert load_measurement("spread/ch6_seed0.json") == json.loads(path.read_text())


def test_reads_from_a_given_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.json").write_text('{"v": 1.5}')
    assert load_measurement("a/x.json", folder=tmp_path) == {"v": 1.5}


@pytest.mark.parametrize("bad", ["spread/ch6_seed0.txt", "../README.json", "/etc/x.json", 3])
def test_bad_names_are_refused(bad):
    with pytest.raises(DataError, match="relative must be"):
        load_measurement(bad)


def test_a_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match="no_such.json"):
        load_measurement("no_such.json", folder=tmp_path)


def test_without_a_folder_it_fetches_from_github(tmp_path, monkeypatch):
    seen = []

    def fake_urlopen(url, timeout):
        seen.append(url)
        return io.BytesIO(b'{"v": 2}')

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    assert load_measurement("a/x.json", folder=tmp_path / "absent") == {"v": 2}
    assert seen == [
        "https://raw.githubusercontent.com/vae-course/vae-course/main/measurements/a/x.json"
    ]


def test_a_failed_fetch_names_the_file_and_the_fix(tmp_path, monkeypatch):
    def fail(url, timeout):
        raise OSError("offline")

    monkeypatch.setattr("urllib.request.urlopen", fail)
    with pytest.raises(DataError, match=r"a/x.json.*offline.*clone"):
        load_measurement("a/x.json", folder=tmp_path / "absent")
