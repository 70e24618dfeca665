"""The package installs by path with pip into a fresh venv and imports
there, with its `ws` extra declared. Needs pip's access to PyPI for the
build backend (setuptools) unless it is cached."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from support import SDK

TIMEOUT = 600


class Install(unittest.TestCase):
    def test_pip_install_by_path_into_a_venv(self):
        with tempfile.TemporaryDirectory() as tmp:
            # From a copy: an in-tree build leaves build/ and *.egg-info behind.
            src = os.path.join(tmp, "callstream-bot")
            shutil.copytree(SDK, src, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
            venv = os.path.join(tmp, "venv")
            subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=TIMEOUT)
            py = os.path.join(venv, "bin", "python")
            pip = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", src]
            out = subprocess.run(pip, capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            check = (
                "import callstream_bot as cs, importlib.metadata as m, os;"
                "print(cs.__version__, m.version('callstream-bot'));"
                "print(os.path.dirname(cs.__file__).startswith(os.path.realpath(%r)));"
                "print(sorted(m.requires('callstream-bot')));"
                "print(os.path.exists(os.path.join(os.path.dirname(cs.__file__), 'py.typed')));"
                "print(issubclass(cs.Bot, object) and callable(cs.run) and callable(cs.serve_ws))"
            ) % os.path.realpath(venv)
            out = subprocess.run([py, "-c", check], capture_output=True, text=True, cwd=tmp, timeout=TIMEOUT)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(
                out.stdout.splitlines(),
                [
                    "0.1.0 0.1.0",
                    "True",
                    str(
                        [
                            "websockets==15.0.1; python_version < \"3.11\" and extra == \"ws\"",
                            "websockets==17.4; python_version >= \"3.11\" and extra == \"ws\"",
                        ]
                    ),
                    "True",
                    "True",
                ],
            )


if __name__ == "__main__":
    unittest.main()
