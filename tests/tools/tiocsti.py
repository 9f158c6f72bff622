"""Try to type a command into every terminal within reach (TIOCSTI), as a
hostile sandbox would: its stdin, stdout, stderr, /dev/tty and every
/dev/pts/N it can open. Prints what each attempt got."""
import fcntl
import glob
import os
import termios

LINE = b"echo TYPED-BY-THE-SANDBOX\n"


def push(fd):
    for c in LINE:
        fcntl.ioctl(fd, termios.TIOCSTI, bytes([c]))


results = []
for fd in (0, 1, 2):
    try:
        push(fd)
        results.append(f"fd{fd}=pushed")
    except OSError as e:
        results.append(f"fd{fd}={e.errno}")
for path in ["/dev/tty"] + sorted(glob.glob("/dev/pts/[0-9]*")):
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    except OSError as e:
        results.append(f"{path}=open:{e.errno}")
        continue
    try:
        push(fd)
        results.append(f"{path}=pushed")
    except OSError as e:
        results.append(f"{path}={e.errno}")
    os.close(fd)
print("TIOCSTI", " ".join(results), flush=True)
