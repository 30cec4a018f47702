"""The test suite. This file is imported before conftest.py, so before an OpenMP runtime loads
(torch's, scikit-learn's): make test runs more processes that compute than there are cores, and
OpenMP threads that spin while they wait for each other took the cores from those that would
compute (the digits tests trained nine times slower than alone). Passive threads sleep instead;
stage processes inherit the setting."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
