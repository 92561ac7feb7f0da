"""The `graderserver` command: options with the original daemon's meanings.

Without -l or -s the daemon works like the original did: it takes jobs until
the queue has none left, then exits (the same as --once). With -l or -s it
runs until stopped.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from graderserver import __version__
from graderserver.client import QueueClient
from graderserver.config import CONFIG_ENV, Config, default_config_path, load_config
from graderserver.daemon import Daemon
from graderserver.errors import GraderServerError, QueueUnavailable
from graderserver.process import AlreadyRunning, PidFile, daemonize

LOG_FORMAT = "%(asctime)s %(levelname)s graderserver[%(process)d] %(threadName)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    # Long but flat: one add_argument per option, in the order --help lists them.
    parser = argparse.ArgumentParser(
        prog="graderserver",
        description="Grading server for graderqueue: polls jobs, runs the grading "
        "program on them and sends the results back.",
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        type=Path,
        help=f"TOML config file (default: ${CONFIG_ENV} or ./graderserver.toml)",
    )
    parser.add_argument(
        "-t", "--testconnection", action="store_true", help="test the connection and exit"
    )
    parser.add_argument(
        "-l", "--listen", action="store_true", help="listen for UDP wake-ups; run until stopped"
    )
    parser.add_argument(
        "-s",
        "--server",
        action="store_true",
        help="server mode: single instance (pid file), run until stopped; implies -D",
    )
    parser.add_argument("-D", "--daemon", action="store_true", help="detach into the background")
    parser.add_argument(
        "-f",
        "--foreground",
        action="store_true",
        help="with -s, stay in the foreground (for systemd and the like)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument(
        "-d", "--debug", action="store_true", help="log at DEBUG level (implies -v)"
    )
    parser.add_argument("-L", "--logfile", metavar="FILE", help="write logs to FILE")
    parser.add_argument(
        "-T",
        "--testbehavior",
        type=int,
        default=0,
        choices=range(7),
        metavar="N",
        help="test behaviour: 0 normal; 1 drop each job; 2 wait 60 s before grading; "
        "3 report a fatal error; 4 report a temporary error; 5 send results "
        "without resultdata; 6 use cat as the program",
    )
    parser.add_argument(
        "--once",
        "--burst",
        action="store_true",
        help="take jobs until the queue has none, then exit (even with -l or -s)",
    )
    parser.add_argument("--version", action="version", version=f"graderserver {__version__}")
    return parser


def setup_logging(config: Config, args: argparse.Namespace) -> None:
    level = getattr(logging, config.log_level.upper())
    if args.verbose:
        level = min(level, logging.INFO)
    if args.debug:
        level = logging.DEBUG
    logger = logging.getLogger("graderserver")
    logger.setLevel(level)
    formatter = logging.Formatter(LOG_FORMAT)
    logfile = args.logfile or config.log_file
    handlers: list[logging.Handler] = []
    if logfile:
        handlers.append(logging.FileHandler(logfile, encoding="utf-8"))
    if not logfile or args.verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)


def test_connection(config: Config) -> int:
    """-t: ask /test.php; 0 when the queue answers errorcode 0."""
    url = config.endpoints["test"]
    print(f"Testing the connection to the queue at {url} ...")
    try:
        answer = QueueClient(config).test()
    except QueueUnavailable as exc:
        print(f"Test failed: {exc}")
        return 1
    code, message = answer["errorcode"], answer.get("errormsg", "")
    if code == 0:
        print(f"Test successful: the queue answered (#{code}) {message}")
        return 0
    print(f"Test failed: the queue answered (#{code}) {message}")
    return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.verbose = args.verbose or args.debug
    try:
        config = load_config(args.config or default_config_path())
    except GraderServerError as exc:
        print(f"graderserver: {exc}", file=sys.stderr)
        return 2
    setup_logging(config, args)
    if args.testconnection:
        return test_connection(config)

    pid_file = None
    if args.server:
        if not config.pid_file:
            print("graderserver: -s needs daemon.pid_file in the config", file=sys.stderr)
            return 2
        try:
            # Locked before detaching, so a refusal is still seen on the terminal.
            pid_file = PidFile(config.pid_file)
        except AlreadyRunning as exc:
            print(f"graderserver: {exc}", file=sys.stderr)
            return 1
    if args.daemon or (args.server and not args.foreground):
        daemonize()
    try:
        if pid_file is not None:
            pid_file.write()
        daemon = Daemon(
            config,
            once=args.once or not (args.listen or args.server),
            listen=args.listen,
            test_behaviour=args.testbehavior,
        )
        daemon.install_signal_handlers()
        return daemon.run()
    except OSError as exc:
        # E.g. the wake-up port is taken: say so plainly, no traceback.
        logging.getLogger("graderserver").critical("Cannot run: %s", exc)
        print(f"graderserver: {exc}", file=sys.stderr)
        return 1
    finally:
        if pid_file is not None:
            pid_file.release()
