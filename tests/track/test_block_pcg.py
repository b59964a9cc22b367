"""The block-arrow CG solve against a dense solve of the same matrix."""

import torch

from prep.track.block_pcg import solve_frames_shared


def _dense(Af, Hfs, As, smooth):
    """The full matrix the solver works with, built entry by entry."""
    T, P, _ = Af.shape
    S = As.shape[0]
    n = T * P + S
    M = torch.zeros(n, n, dtype=Af.dtype)
    for t in range(T):
        M[t * P : (t + 1) * P, t * P : (t + 1) * P] = Af[t]
        M[t * P : (t + 1) * P, T * P :] = Hfs[t]
        M[T * P :, t * P : (t + 1) * P] = Hfs[t].T
    M[T * P :, T * P :] = As
    for idx, c in smooth:
        for t in range(T - 1):
            for k in idx.tolist():
                i, j = t * P + k, (t + 1) * P + k
                M[i, j] -= c
                M[j, i] -= c
    return M


def test_matches_dense_solve():
    g = torch.Generator().manual_seed(0)
    T, P, S = 7, 5, 3
    J = torch.randn(T, 12, P, generator=g, dtype=torch.float64)
    smooth = [(torch.tensor([0, 2]), 0.7), (torch.tensor([4]), 2.0)]
    lap = torch.zeros(T, P, dtype=torch.float64)
    n_nb = torch.full((T,), 2.0, dtype=torch.float64)
    n_nb[0] = n_nb[-1] = 1.0
    for idx, c in smooth:
        lap[:, idx] += c * n_nb[:, None]
    Af = J.transpose(1, 2) @ J + torch.diag_embed(lap + 0.1)
    Js = torch.randn(T, 12, S, generator=g, dtype=torch.float64)
    Hfs = J.transpose(1, 2) @ Js
    As = torch.einsum("trs,tru->su", Js, Js) + 0.1 * torch.eye(S, dtype=torch.float64)
    bf = torch.randn(T, P, generator=g, dtype=torch.float64)
    bs = torch.randn(S, generator=g, dtype=torch.float64)
    xf, xs = solve_frames_shared(Af, Hfs, As, smooth, bf, bs, iters=200, tol=1e-12)
    x = torch.linalg.solve(_dense(Af, Hfs, As, smooth), torch.cat([bf.reshape(-1), bs]))
    assert torch.allclose(torch.cat([xf.reshape(-1), xs]), x, atol=1e-8)


def test_no_shared_block():
    g = torch.Generator().manual_seed(1)
    T, P = 4, 3
    J = torch.randn(T, 6, P, generator=g, dtype=torch.float64)
    Af = J.transpose(1, 2) @ J + torch.eye(P, dtype=torch.float64)
    bf = torch.randn(T, P, generator=g, dtype=torch.float64)
    empty = torch.zeros(0, dtype=torch.float64)
    xf, xs = solve_frames_shared(
        Af,
        torch.zeros(T, P, 0, dtype=torch.float64),
        torch.zeros(0, 0, dtype=torch.float64),
        [],
        bf,
        empty,
        tol=1e-12,
    )
    assert xs.numel() == 0
    assert torch.allclose(xf, torch.linalg.solve(Af, bf[..., None])[..., 0], atol=1e-10)
