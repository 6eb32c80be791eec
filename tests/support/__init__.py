"""Helpers the tests share: the test engine, the agent subprocess, real peers, waits and factories."""
