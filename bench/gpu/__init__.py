"""The GPU run (`python -m bench.gpu`): one prepared script for a lent GPU machine, with a CPU dry run in the tests."""
