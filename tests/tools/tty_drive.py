"""Be the user's terminal: run a command on a pty of ours, then tell
whether anything was pushed into that terminal's input.

    tty_drive.py CMD [ARG]...

`TTY_INPUT`, if set, is typed (written to the master) half a second
after the start, as a user would. The command gets the pty's slave as its controlling terminal and its
stdin, stdout and stderr, as a shell gives a foreground job. Its output is
copied to our stdout. After it exits, the bytes waiting in the terminal's
input queue (what the user's shell would read and run next) are counted
with FIONREAD on the slave and printed as `PENDING N <bytes>`.
"""
import fcntl
import os
import select
import struct
import sys
import termios
import time

master, slave = os.openpty()
pid = os.fork()
if pid == 0:
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.execvp(sys.argv[1], sys.argv[1:])
out = b""
typed = os.environ.get("TTY_INPUT", "").encode().decode("unicode_escape").encode()
start = time.time()
deadline = start + 30
done = False
while time.time() < deadline:
    if typed and time.time() > start + 0.5:
        os.write(master, typed)
        typed = b""
    r, _, _ = select.select([master], [], [], 0.2)
    if r:
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        out += data
    wpid, status = os.waitpid(pid, os.WNOHANG)
    if wpid == pid:
        done = True
        break
if not done:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    status = -1
time.sleep(0.3)
pending = struct.unpack("i", fcntl.ioctl(slave, termios.FIONREAD, b"\0\0\0\0"))[0]
attr = termios.tcgetattr(slave)
attr[3] &= ~(termios.ICANON | termios.ECHO)
attr[6][termios.VMIN] = 0
attr[6][termios.VTIME] = 0
termios.tcsetattr(slave, termios.TCSANOW, attr)
queued = os.read(slave, 4096) if pending else b""
sys.stdout.write(out.decode(errors="replace"))
print(f"\nSTATUS {status}")
print(f"PENDING {pending} {queued!r}", flush=True)
