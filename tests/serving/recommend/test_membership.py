import numpy as np
import pytest

from serving.recommend.membership import isin


@pytest.mark.parametrize("n_values, n_members", [(0, 5), (5, 0), (1, 1), (210, 10), (250, 300), (50, 2000)])
def test_isin_equals_numpy(n_values: int, n_members: int) -> None:
    rng = np.random.default_rng(n_values * 1000 + n_members)
    values = rng.integers(-1, 400, n_values)  # -1: the padding id FAISS returns, never a member here
    members = rng.integers(0, 400, n_members)
    got = isin(values, members)
    assert got.dtype == bool and got.shape == values.shape
    np.testing.assert_array_equal(got, np.isin(values, members))


def test_isin_values_past_the_largest_member_and_duplicates() -> None:
    values = np.array([7, 3, 3, 9, 100, 0])
    members = np.array([3, 3, 7])
    np.testing.assert_array_equal(isin(values, members), [True, True, True, False, False, False])
