"""Run the working tree's ``flatnet`` CLI as a child process: one-shot commands and the agent."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from flatnet_lab.launch import agent_argv, child_env


def flatnet_cli(*argv: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m flatnet.cli.main ARGV...``, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "flatnet.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def spawn_agent(sock: str, *argv: str) -> subprocess.Popen[str]:
    """``flatnet agent --socket SOCK ARGV...`` with this interpreter's sys.path; stderr piped."""
    return subprocess.Popen(
        agent_argv(sock, extra=argv),
        env=child_env(),
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_socket(agent: subprocess.Popen[str], sock: str, timeout: float) -> None:
    """Until ``sock`` exists, the agent exits or ``timeout`` seconds pass (the caller checks which)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(sock) and agent.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_agent(agent: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    agent.terminate()
    try:
        agent.wait(20)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait(10)
