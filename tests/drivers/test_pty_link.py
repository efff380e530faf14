"""``DevicePort.link`` never deletes what it did not make."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivers.errors import PortError
from drivers.pty import DevicePort


def test_a_file_at_the_link_path_is_refused_and_left_alone(tmp_path: Path) -> None:
    precious = tmp_path / "validator"
    precious.write_text("not ours")
    port = DevicePort()
    try:
        with pytest.raises(PortError, match="not a symlink"):
            port.link(precious)
    finally:
        port.close()
    assert precious.read_text() == "not ours"


def test_a_directory_at_the_link_path_is_refused(tmp_path: Path) -> None:
    port = DevicePort()
    try:
        with pytest.raises(PortError, match="not a symlink"):
            port.link(tmp_path)
    finally:
        port.close()
    assert tmp_path.is_dir()


def test_a_stale_link_is_replaced_and_removed_at_close(tmp_path: Path) -> None:
    link = tmp_path / "validator"
    link.symlink_to(tmp_path / "gone")
    port = DevicePort()
    port.link(link)
    assert link.readlink() == port.path
    port.close()
    assert not link.is_symlink()


def test_close_leaves_a_file_that_replaced_our_link(tmp_path: Path) -> None:
    link = tmp_path / "validator"
    port = DevicePort()
    port.link(link)
    link.unlink()
    link.write_text("someone else's")
    port.close()
    assert link.read_text() == "someone else's"


def test_close_leaves_a_link_that_points_elsewhere(tmp_path: Path) -> None:
    link = tmp_path / "validator"
    port = DevicePort()
    port.link(link)
    link.unlink()
    link.symlink_to(tmp_path / "another-simulator")
    port.close()
    assert link.readlink() == tmp_path / "another-simulator"


@pytest.mark.parametrize("sim", [["validator", "--protocol", "essp"], ["printer", "--out", "o"]])
def test_kiosk_sim_refuses_a_file_cleanly(tmp_path: Path, sim: list[str]) -> None:
    precious = tmp_path / "port"
    precious.write_text("not ours")
    done = subprocess.run(
        [sys.executable, "-m", "kiosk", "sim", *sim, "--link", str(precious)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "not a symlink" in done.stderr and "Traceback" not in done.stderr
    assert precious.read_text() == "not ours"
