"""The namespace LAN fixture of tests/lan, shared with the security tests."""

from tests.lan.conftest import netns_lan, pytest_runtest_makereport

__all__ = ["netns_lan", "pytest_runtest_makereport"]
