"""The fork server: one process per env server that imports smolagents once and forks workers.

Starting a fresh Python and importing smolagents takes about half a second; forking a process
that has done so already takes a few milliseconds. So the env server starts one fork server
(``python -c "...fork_server import main; main(FD)"``) and asks it for every worker.

Control protocol, on a socketpair, used by one server thread at a time: the server sends a
frame (4-byte big-endian length and a msgpack payload), the fork server answers it with one.

- ``Fork(config)``, with the worker's end of a fresh socketpair attached (SCM_RIGHTS): the fork
  server forks a child that runs ``worker.main`` on that socket; the answer carries its pid.
- ``Adopt(pid)``: take on a worker's fork (a copy the worker forked for a forked session, which
  the fork server, a child subreaper, inherited when its intermediate parent exited). Accepted
  only for a process that is the fork server's child and not already one of its workers, so a
  worker cannot make the server treat another session's worker (or itself) as its copy.
- ``Wait(pid)``: whether that child still runs, else its exit code (negative: killed by that
  signal). The fork server reaps its children as they exit, and remembers recent exit codes.

The fork server exits when the control socket closes (the env server exited or died), killing
its children; on Linux each worker also has SIGKILL as its parent-death signal. The fork server
gets the env server's environment minus ``OPENENV_TOKEN``, so no worker ever sees the token.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import msgspec

from envs.coding_env.server.worker import HEADER, WorkerConfig, read_frame

__all__ = ["Adopt", "Answer", "Fork", "ForkServer", "Wait", "main"]

_ROOT = str(Path(__file__).resolve().parents[3])  # the directory holding the envs package
_ANSWER_TIMEOUT_S = 60.0  # the first answer waits for smolagents to be imported
_MAX_REMEMBERED_EXITS = 4096
_MAX_FRAME = 1 << 20
_HIDDEN_VARIABLES = ("OPENENV_TOKEN",)


class Fork(msgspec.Struct, tag="fork"):
    config: WorkerConfig


class Wait(msgspec.Struct, tag="wait"):
    pid: int


class Adopt(msgspec.Struct, tag="adopt"):
    pid: int


class Answer(msgspec.Struct):
    pid: int | None = None
    running: bool = False
    exit_code: int | None = None
    error: str | None = None


_ENCODER = msgspec.msgpack.Encoder()


def _frame(message: msgspec.Struct) -> bytes:
    payload = _ENCODER.encode(message)
    return HEADER.pack(len(payload)) + payload


def _read_frame(sock: socket.socket) -> tuple[bytes | None, list[int]]:
    """One control frame and the fds attached to it; (None, []) at end of file."""
    return read_frame(sock, max_fds=4, max_size=_MAX_FRAME)


# The fork server's side.


def main(control_fd: int) -> None:
    """Serve fork requests on ``control_fd`` until it closes."""
    control = socket.socket(fileno=control_fd)
    control.setblocking(True)
    import smolagents.local_python_executor  # type: ignore[import-untyped]  # noqa: F401

    _become_subreaper()

    from envs.coding_env.server import worker

    children: set[int] = set()
    exits: dict[int, int] = {}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # just wakes select() through wake_w
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the env server's to handle
    decoder = msgspec.msgpack.Decoder(Fork | Wait | Adopt)
    try:
        while True:
            ready, _, _ = select.select([control.fileno(), wake_r], [], [])
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 4096):
                        pass
            _reap(children, exits)
            if control.fileno() not in ready:
                continue
            frame, fds = _read_frame(control)
            if frame is None:
                return
            request = decoder.decode(frame)
            if isinstance(request, Fork):
                if len(fds) != 1:
                    for fd in fds:
                        os.close(fd)
                    answer = Answer(error=f"a fork request needs 1 socket, got {len(fds)}")
                else:
                    parent_pid = os.getpid()
                    pid = os.fork()
                    if pid == 0:
                        _become_worker(worker.main, fds[0], request.config, parent_pid)
                    os.close(fds[0])
                    children.add(pid)
                    answer = Answer(pid=pid)
            elif isinstance(request, Adopt):
                for fd in fds:
                    os.close(fd)
                answer = _adopt(request.pid, children, exits)
            else:
                for fd in fds:
                    os.close(fd)
                _reap(children, exits)
                if request.pid in children:
                    answer = Answer(pid=request.pid, running=True)
                else:
                    answer = Answer(pid=request.pid, exit_code=exits.pop(request.pid, None))
            control.sendall(_frame(answer))
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _become_subreaper() -> None:
    """Inherit orphaned descendants: a worker's fork is re-parented here, to be reaped and
    killed with the other workers, and to get this process as its parent-death watch."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_child_subreaper = 36
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def _adopt(pid: int, children: set[int], exits: dict[int, int]) -> Answer:
    if pid <= 0:  # waitpid would read it as a process group
        return Answer(error=f"{pid} is not a process id")
    if pid in children:
        return Answer(error=f"process {pid} is a worker already")
    if pid in exits:
        return Answer(pid=pid, exit_code=exits.pop(pid))
    try:
        waited, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return Answer(error=f"process {pid} is not a child of the fork server")
    if waited == 0:
        children.add(pid)
        return Answer(pid=pid, running=True)
    return Answer(pid=pid, exit_code=os.waitstatus_to_exitcode(status))


def _become_worker(run: object, fd: int, config: WorkerConfig, parent_pid: int) -> None:
    """In the forked child: shed the fork server's state and run the worker; never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _close_fds_except(fd)  # not the control socket, not the wake-up pipe
        run(socket.socket(fileno=fd), config, parent_pid)  # type: ignore[operator]
        code = 0
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        os._exit(code)


def _close_fds_except(keep: int) -> None:
    """Close every fd but stdio and ``keep``."""
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: close a bounded range
        os.closerange(3, keep)
        os.closerange(keep + 1, 4096)
        return
    for fd in open_fds:
        if fd > 2 and fd != keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _reap(children: set[int], exits: dict[int, int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        exits[pid] = os.waitstatus_to_exitcode(status)
        if len(exits) > _MAX_REMEMBERED_EXITS:
            del exits[next(iter(exits))]


# The env server's side.


class ForkServer:
    """The env server's handle on its fork server, started on first use. Not thread-safe:
    use it from one thread (the env's spawner thread)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._decoder = msgspec.msgpack.Decoder(Answer)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def ensure_running(self) -> None:
        if self._control is None or self._process is None or self._process.poll() is not None:
            self.close()
            self._start()

    def fork(self, config: WorkerConfig) -> tuple[int, socket.socket]:
        """A new worker: its pid and the server's end of its socket (non-blocking)."""
        for attempt in (1, 2):  # a fork server that died is restarted once
            ours, theirs = socket.socketpair()
            try:
                answer = self._request(Fork(config=config), theirs.fileno())
            except RuntimeError:
                ours.close()
                if attempt == 2:
                    raise
                continue
            finally:
                theirs.close()
            if answer.pid is None:
                ours.close()
                raise RuntimeError(f"the coding fork server refused: {answer.error}")
            ours.setblocking(False)
            return answer.pid, ours
        raise AssertionError("unreachable")

    def adopt(self, pid: int) -> bool:
        """Take on ``pid``, a running fork of a worker; False if it is no such process."""
        try:
            answer = self._request(Adopt(pid=pid))
        except RuntimeError:
            return False
        return answer.running and answer.pid == pid

    def wait(self, pid: int, timeout: float) -> int | None:
        """``pid``'s exit code once it has exited, or None if unknown or past ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self._request(Wait(pid=pid))
            except RuntimeError:
                return None
            if not answer.running:
                return answer.exit_code
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.002)

    def close(self) -> None:
        """Stop the fork server (and with it every worker it forked)."""
        control, self._control = self._control, None
        process, self._process = self._process, None
        if control is not None:
            control.close()
        if process is not None:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        command = (
            f"import sys; sys.path.insert(0, {_ROOT!r}); "
            f"from envs.coding_env.server.fork_server import main; main({theirs.fileno()})"
        )
        environment = {k: v for k, v in os.environ.items() if k not in _HIDDEN_VARIABLES}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", command],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=environment,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(_ANSWER_TIMEOUT_S)
        self._control = ours

    def _request(self, request: Fork | Wait | Adopt, fd: int | None = None) -> Answer:
        self.ensure_running()
        control = self._control
        assert control is not None
        frame = _frame(request)
        try:
            if fd is None:
                control.sendall(frame)
            else:
                sent = socket.send_fds(control, [frame], [fd])
                control.sendall(frame[sent:])
            data, fds = _read_frame(control)
        except (OSError, ValueError) as exc:
            self.close()
            raise RuntimeError(f"the coding fork server failed: {exc}") from exc
        for extra in fds:
            os.close(extra)
        if data is None:
            code = self._process.poll() if self._process is not None else None
            self.close()
            raise RuntimeError(f"the coding fork server exited (code {code}); see the log")
        return self._decoder.decode(data)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run by the coding env server, not by hand")
