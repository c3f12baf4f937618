"""`logs: {max_size, max_files}`: per-replica retention, with the kubelet's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.errors import SpecError
from stackblaze.spec import load_project

HEAD = "project: shop\nservices:\n  - name: worker\n    start: python3 w.py\n"


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    (tmp_path / "stackblaze.yaml").write_text(text)
    return load_project(tmp_path).services[0]


def test_defaults_are_the_kubelets(tmp_path: Path) -> None:
    service = load(tmp_path, HEAD)
    assert (service.log_max_bytes, service.log_max_files) == (10 << 20, 5)


def test_sizes_take_binary_and_decimal_units(tmp_path: Path) -> None:
    service = load(tmp_path, HEAD + "    logs: {max_size: 512Ki, max_files: 2}\n")
    assert (service.log_max_bytes, service.log_max_files) == (512 << 10, 2)
    assert load(tmp_path, HEAD + "    logs: {max_size: 1MB}\n").log_max_bytes == 1_000_000


@pytest.mark.parametrize(("logs", "message"), [
    ("{max_size: lots}", "stackblaze.yaml:5: services[0].logs.max_size: 'lots' is not a size (e.g. max_size: 10Mi)"),
    ("{max_size: 1Ki}", "stackblaze.yaml:5: services[0].logs.max_size: '1Ki' is out of range (use 64Ki to 10Gi"),
    ("{max_files: 0}", "stackblaze.yaml:5: services[0].logs.max_files: 0 is out of range (use 1 to 100"),
    ("{max_file: 3}", "stackblaze.yaml:5: services[0].logs.max_file: unknown field (did you mean max_files?)"),
    ("10Mi", "stackblaze.yaml:5: services[0].logs: '10Mi' is not a mapping"),
])
def test_bad_values_are_one_line_errors(tmp_path: Path, logs: str, message: str) -> None:
    with pytest.raises(SpecError) as error:
        load(tmp_path, HEAD + f"    logs: {logs}\n")
    assert str(error.value).startswith(message), str(error.value)
