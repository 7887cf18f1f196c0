"""Child-process servers for the embedded profile and the tests.

Everything started here is registered in one place and stopped by PID when foodrisk exits,
on Ctrl-C and on SIGTERM: nothing foodrisk starts may outlive it.
"""

from pipeline.localstack.process import ChildProcess, StartupError, free_port, stop_all

__all__ = ["ChildProcess", "StartupError", "free_port", "stop_all"]
