"""What the tests share: fixture plugins (registered by `pytest_plugins` in
tests/conftest.py, so a test names a fixture as an argument and imports nothing) and
helper modules that tests import. A test module never imports conftest or another test.
"""
