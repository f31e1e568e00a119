//! Nothing here: the tests in `tests/` are the fixture (another project's integration tests
//! against an in-process backup-server).
