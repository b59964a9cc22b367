"""Conjugate-gradient solve of the FLAME tracker's block-arrow Gauss-Newton system.

Per-frame parameter blocks couple only to their neighbours (temporal smoothness) and to the
shared parameters (shape, shared translation, focal), so the system is solved matrix-free in
O(T) memory; each frame's block and the shared block are Cholesky-factored once as the
preconditioner.
"""

from __future__ import annotations

import torch


def solve_frames_shared(
    Af: torch.Tensor,
    Hfs: torch.Tensor,
    As: torch.Tensor,
    smooth: list[tuple[torch.Tensor, float]],
    bf: torch.Tensor,
    bs: torch.Tensor,
    iters: int = 40,
    tol: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve the tracker's damped Gauss-Newton system by block-Jacobi preconditioned CG.

    The matrix is ``[[Af + L, Hfs], [Hfs^T, As]]``: per-frame blocks ``Af`` (their diagonal
    already holding the smoothness Laplacian's diagonal), the off-diagonal part of the frame
    chain's graph Laplacian ``L`` (per column group, weight ``c``), and the coupling ``Hfs`` to
    the shared block ``As``.

    Args:
        Af: (T, P, P) per-frame blocks.
        Hfs: (T, P, S) frame-shared coupling.
        As: (S, S) shared block (S may be 0).
        smooth: (column indices, weight) per smoothness group.
        bf: (T, P) and bs: (S,) right-hand side.
        iters: at most this many CG iterations.
        tol: stop when the residual norm falls below ``tol`` times the right-hand side's.

    Returns:
        ``(xf (T, P), xs (S,))``.
    """

    # the chain's off-diagonal weight per column (groups on the same columns add up)
    c_col = torch.zeros(bf.shape[1], dtype=bf.dtype, device=bf.device)
    for idx, c in smooth:
        c_col[idx] += c

    Hfs_flat = Hfs.reshape(bf.numel(), bs.numel())

    def matvec(xf, xs):
        yf = (Af @ xf[..., None])[..., 0]
        if xs.numel():
            yf += Hfs @ xs
        if smooth:  # graph Laplacian of the frame chain, off the diagonal: -c (x[t-1] + x[t+1])
            nb = torch.zeros_like(xf)
            nb[:-1] += xf[1:]
            nb[1:] += xf[:-1]
            yf -= c_col * nb
        # Hfs^T xf as one (1, T P) x (T P, S) product: einsum("tds,td->s") took 545 ms at
        # T = 3000 (17x its 600-frame time, the CG's whole super-linear cost) against 16 ms
        ys = As @ xs + (xf.reshape(1, -1) @ Hfs_flat)[0] if xs.numel() else xs
        return yf, ys

    Lf = torch.linalg.cholesky(Af)
    Ls = torch.linalg.cholesky(As) if bs.numel() else None

    def precond(rf, rs):
        # two batched triangular solves: half the time of cholesky_solve's batched kernel
        y = torch.linalg.solve_triangular(Lf, rf[..., None], upper=False)
        zf = torch.linalg.solve_triangular(Lf.mT, y, upper=True)[..., 0]
        zs = torch.cholesky_solve(rs[:, None], Ls)[:, 0] if Ls is not None else rs
        return zf, zs

    xf, xs = torch.zeros_like(bf), torch.zeros_like(bs)
    rf, rs = bf.clone(), bs.clone()
    zf, zs = precond(rf, rs)
    pf_, ps_ = zf.clone(), zs.clone()
    rz = (rf * zf).sum() + (rs * zs).sum()
    b_norm = torch.sqrt((bf * bf).sum() + (bs * bs).sum()).clamp(min=1e-30)
    for _ in range(iters):
        qf, qs = matvec(pf_, ps_)
        alpha = rz / ((pf_ * qf).sum() + (ps_ * qs).sum()).clamp(min=1e-30)
        xf, xs = xf + alpha * pf_, xs + alpha * ps_
        rf, rs = rf - alpha * qf, rs - alpha * qs
        if torch.sqrt((rf * rf).sum() + (rs * rs).sum()) < tol * b_norm:
            break
        zf, zs = precond(rf, rs)
        rz_new = (rf * zf).sum() + (rs * zs).sum()
        beta = rz_new / rz.clamp(min=1e-30)
        pf_, ps_ = zf + beta * pf_, zs + beta * ps_
        rz = rz_new
    return xf, xs
