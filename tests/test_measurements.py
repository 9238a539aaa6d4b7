"""load_measurement reads the committed JSON files and names what is wrong when it cannot."""

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


@pytest.mark.parametrize("bad", ["spread/ch6_seed0.txt", "../README.json", 3])
def test_bad_names_are_refused(bad):
    with pytest.raises(DataError, match="relative must be"):
        load_measurement(bad)


def test_a_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match="no_such.json"):
        load_measurement("no_such.json", folder=tmp_path)
