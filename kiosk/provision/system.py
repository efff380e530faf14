"""The machine: its tools and owners (:class:`System`, which tests replace), a plan's steps run
on it (:class:`Run`), the service user, and systemd and udev told of what changed.

The service user: a systemd-sysusers file is always written (the clean way for images:
systemd-sysusers.service creates the user at boot from it), and ``systemd-sysusers [--root]``
runs when it is on this machine, so the owners can be set now; on ``/`` without it,
``useradd``/``usermod``. On ``/`` systemd and udev are then reloaded, when their files changed.

Owners are the root's own (its ``etc/passwd`` and ``etc/group``), set only when running as
root; otherwise each file says who would own it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiosk.provision.plan import GROUPS, SYSUSERS, UDEV, UNIT_DIR, USER, Plan
from kiosk.provision.steps import Outcome, Status, Step, _make


class System:
    """What provisioning asks of the machine beyond files (tests pass a subclass)."""

    def euid(self) -> int:
        return os.geteuid()

    def which(self, name: str) -> str | None:
        import shutil

        return shutil.which(name)

    def run(self, argv: Sequence[str]) -> tuple[int, str]:
        try:
            done = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=300, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 127, str(exc)
        return done.returncode, (done.stderr or done.stdout).strip()

    def chown(self, path: Path, uid: int, gid: int) -> None:
        os.chown(path, uid, gid, follow_symlinks=False)


def _ids(root: Path, owner: str, group: str) -> tuple[int, int] | None:
    """The owner's uid and the group's gid in the root's own passwd and group files."""

    def lookup(file: str, name: str) -> int | None:
        if name == "root":
            return 0
        for line in _lines(root / "etc" / file):
            fields_ = line.split(":")
            if len(fields_) > 2 and fields_[0] == name and fields_[2].isdigit():
                return int(fields_[2])
        return None

    uid, gid = lookup("passwd", owner), lookup("group", group)
    return None if uid is None or gid is None else (uid, gid)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


@dataclass(frozen=True, slots=True)
class Run:
    plan: Plan
    system: System
    dry_run: bool

    def step(self, step: Step, changes: list[str]) -> Outcome:
        target = self.plan.under(step.path)
        ids = _ids(self.plan.root, step.owner, step.group)
        chown = self._chowner(ids) if step.link is None else None
        if changes and not self.dry_run:
            _make(step, target, chown)
        note = ""
        exists = target.exists() or target.is_symlink()
        if step.link is None and exists and (ids is None or _owner_of(target) != ids):
            who = f"{step.owner}:{step.group}"
            if self.system.euid() != 0:
                note = f"would be owned by {who}: run as root"
            elif ids is None:
                note = f"would be owned by {who}: no such user or group under {self.plan.root} yet"
            elif chown is not None:
                changes = [*changes, f"owner {who}"]
                if not self.dry_run:
                    chown(target)
        detail = ", ".join(changes) + ("; " if changes and note else "") + note
        return Outcome(str(step.path), Status.CHANGED if changes else Status.UNCHANGED, detail)

    def _chowner(self, ids: tuple[int, int] | None) -> Callable[[Path], None] | None:
        """Sets the owner, when running as root and the root knows the user and group."""
        if ids is None or self.system.euid() != 0:
            return None
        uid, gid = ids
        return lambda path: self.system.chown(path, uid, gid)


def _owner_of(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid


def missing_membership(root: Path) -> list[str]:
    """What the root's passwd and group files lack: the user, its groups."""
    if not any(line.startswith(f"{USER}:") for line in _lines(root / "etc/passwd")):
        return [f"user {USER}", *(f"{USER} in {g}" for g in GROUPS)]
    members = {
        f[0]: f[3].split(",")
        for f in (ln.split(":") for ln in _lines(root / "etc/group"))
        if len(f) > 3
    }
    return [f"{USER} in {g}" for g in GROUPS if USER not in members.get(g, [])]


def _user_commands(run: Run, home: Path) -> list[list[str]] | None:
    """systemd-sysusers on our sysusers.d file; else, on ``/``, useradd and usermod."""
    root, here = run.plan.root, run.plan.on_this_machine
    tool = run.system.which("systemd-sysusers")
    if tool is not None:
        return [[tool, *([] if here else [f"--root={root}"]), str(run.plan.under(SYSUSERS))]]
    if not here or run.system.which("useradd") is None:
        return None
    groups = {f.split(":")[0] for f in _lines(root / "etc/group")}
    argv = [["groupadd", "--system", g] for g in GROUPS if g not in groups]
    if f"user {USER}" in missing_membership(root):
        useradd = "useradd --system --user-group --no-create-home --shell /usr/sbin/nologin"
        argv.append([*useradd.split(), "--home-dir", str(home), USER])
    return [*argv, ["usermod", "-a", "-G", ",".join(GROUPS), USER]]


def ensure_user(run: Run) -> Outcome:
    name, root = f"service user {USER}", run.plan.root
    missing = missing_membership(root)
    if not missing:
        return Outcome(name, Status.UNCHANGED, f"in {' '.join(GROUPS)}")
    commands = _user_commands(run, run.plan.state_dir)
    if commands is None:
        return Outcome(
            name,
            Status.PENDING,
            f"{', '.join(missing)}: no systemd-sysusers here; systemd-sysusers.service makes"
            " the user at the kiosk's boot: provision again there to set the owners",
        )
    if run.dry_run:
        return Outcome(name, Status.CHANGED, f"{', '.join(missing)} (by {commands[0][0]})")
    (root / "etc").mkdir(parents=True, exist_ok=True)  # a bare folder: the tools lock etc/
    for argv in commands:
        rc, out = run.system.run(argv)
        if rc != 0:
            return Outcome(name, Status.FAILED, f"{' '.join(argv)}: exit {rc}: {out}")
    still = missing_membership(root)
    if still:
        return Outcome(
            name, Status.FAILED, f"still missing after {commands[0][0]}: {', '.join(still)}"
        )
    return Outcome(name, Status.CHANGED, f"{', '.join(missing)} (by {Path(commands[0][0]).name})")


def reloads(run: Run, outcomes: Sequence[Outcome]) -> list[Outcome]:
    """On ``/``: systemd and udev read what changed."""
    if not run.plan.on_this_machine or run.dry_run:
        return []
    changed = {Path(o.name) for o in outcomes if o.status is Status.CHANGED}
    commands = (
        [["systemctl", "daemon-reload"]] if any(p.is_relative_to(UNIT_DIR) for p in changed) else []
    )
    if UDEV in changed:
        commands += [
            ["udevadm", "control", "--reload"],
            ["udevadm", "trigger", "--subsystem-match=tty", "--action=add"],
        ]
    result = []
    for argv in commands:
        rc, text = run.system.run(argv)
        result.append(
            Outcome(" ".join(argv), Status.OK if rc == 0 else Status.FAILED, text if rc else "")
        )
    return result
