"""Test-bed pieces shared by the tests, the bench and chaos (not part of the runtime datapath)."""
