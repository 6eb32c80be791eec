"""The optional C part of the collector's hot path (agent/_procnet.c); everything else is in
pyproject.toml. `optional=True`: without a C compiler and Python's headers the build still
succeeds and agent/fastproc.py uses the pure-Python parsers (the agent logs which one it runs)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "agent._procnet",
            ["agent/_procnet.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
