"""L-BFGS that never waits for the GPU, so that a whole iteration can be one CUDA graph.

torch.optim.LBFGS takes its decisions on the host (`if ys > 1e-10`, the history's length, the
first step's size), and each one waits for the GPU to finish; its two-loop recursion launches four
small kernels per stored pair, hundreds per step. This one keeps every decision on the device
(`torch.where`) and every tensor at a fixed shape and address, and gets the direction from the
compact representation of the inverse Hessian (Byrd, Nocedal and Schnabel, "Representations of
quasi-Newton matrices and their use in limited memory methods", 1994):

    H = g I + [S  g Y] W [S  g Y]ᵀ,   W = [[R⁻ᵀ(D + g YᵀY)R⁻¹, -R⁻ᵀ], [-R⁻¹, 0]]

with g = gamma, S and Y the stored pairs oldest first, R the upper triangle of SᵀY, D its diagonal. So a step
is one product of the whole history with three vectors, some m-by-m algebra and one product back:
the same work as the two-loop recursion, in a fixed number of kernels (about 60, most of them on
m-by-m matrices) whatever the history's length.

It is the method of torch.optim.LBFGS(lr, max_iter=1, history_size=m, no line search) stepped
once per iteration: the same first step (scaled by 1/|g|₁), the same curvature test (a pair with
sᵀy <= 1e-10 is not stored), the same gamma = sᵀy / yᵀy. Only the rounding differs.
"""

from __future__ import annotations

import math

import torch

CURVATURE_MIN = 1e-10  # torch.optim.LBFGS's threshold for storing a pair


class LBFGS:
    """L-BFGS over one flat tensor. `step(x, grad)` moves x in place; all state lives on x's device."""

    def __init__(
        self,
        x: torch.Tensor,
        history: int = 100,
        lr: float = 1.0,
        max_move: float = math.inf,
    ) -> None:
        if history < 1:
            raise ValueError(f"history must be at least 1, not {history}")
        m, n = history, x.numel()
        vector = {"device": x.device, "dtype": x.dtype}
        # The m-by-m algebra is tiny: float64 keeps R's triangular solves well conditioned.
        small = {"device": x.device, "dtype": torch.float64}
        self.history = m
        self.lr = lr
        self.max_move = max_move
        self.n = n
        # Every tensor below is updated in place only: a CUDA graph replays reads and writes at
        # the addresses it was captured with.
        # rows 0..m-1: s_i; m..2m-1: y_i; 2m and 2m+1: where a rejected pair goes (never read)
        self.pairs = torch.zeros(2 * m + 2, n, **vector)
        self.vectors = torch.zeros(3, n, **vector)  # g; s, the last move; y = g - the last g
        self.previous_grad = torch.zeros(n, **vector)
        self.sy = torch.zeros(m, m, **small)  # sy[i, j] = s_i . y_j
        self.yy = torch.zeros(m, m, **small)  # yy[i, j] = y_i . y_j
        self.age = torch.full((m,), -1.0, **small)  # iteration that stored pair i; -1: empty
        self.head = torch.zeros((), device=x.device, dtype=torch.long)  # slot of the next pair
        self.gamma = torch.ones((), **small)  # initial inverse Hessian scale, sᵀy / yᵀy
        self.iteration = torch.zeros((), **small)
        self.slots = torch.arange(m, device=x.device)
        # Made on the device (torch.tensor([...], device=...) would copy from the host and wait):
        self.pair_rows = torch.arange(2, device=x.device) * m  # a pair's rows: slot + these (0, m)
        self.discard_rows = torch.arange(2, device=x.device) + 2 * m

    @property
    def stored(self) -> torch.Tensor:
        """How many pairs the history holds (a device tensor; reading it waits for the device)."""
        return (self.age >= 0).sum()

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> None:
        """One iteration: store the pair from the last step, then move x along -H·grad."""
        # The history products are dot products over every pixel that decide the step: in full
        # fp32 whatever the job allows its other matrix products (TF32 for the Gram matrices).
        saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            with torch.no_grad():
                self._step(x, grad)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = saved

    def _step(self, x: torch.Tensor, grad: torch.Tensor) -> None:
        m, n = self.history, self.n
        g, s, y = (row[:n] for row in self.vectors)
        g.copy_(grad.reshape(-1))
        torch.sub(g, self.previous_grad, out=y)
        self.previous_grad.copy_(g)

        # The history as it was with g, s and y, and g, s and y with each other: two passes.
        products = (self.pairs[: 2 * m] @ self.vectors.T).double()
        s_g, _, s_y = products[:m].unbind(1)  # (S·s is computed in the same pass but not needed)
        y_g, y_s, y_y = products[m:].unbind(1)
        own = (self.vectors @ self.vectors.T).double()
        ys, yy = own[1, 2], own[2, 2]
        valid = ys > CURVATURE_MIN
        new = (self.slots == self.head) & valid  # the slot that takes the pair, if it is stored
        row, column = new[:, None], new[None, :]

        # A rejected pair is written too, to rows nobody reads: one copy, and no branch.
        self.pairs.index_copy_(0, torch.where(valid, self.head + self.pair_rows, self.discard_rows), self.vectors[1:])
        sy_row = torch.where(new, ys, y_s)  # s_new . y_j
        sy_column = torch.where(new, ys, s_y)  # s_i . y_new
        self.sy.copy_(torch.where(row, sy_row[None, :], torch.where(column, sy_column[:, None], self.sy)))
        yy_new = torch.where(new, yy, y_y)
        self.yy.copy_(torch.where(row, yy_new[None, :], torch.where(column, yy_new[:, None], self.yy)))
        self.age.copy_(torch.where(new, self.iteration, self.age))
        self.gamma.copy_(torch.where(valid, ys / yy.clamp_min(torch.finfo(torch.float64).tiny), self.gamma))
        self.head.copy_(torch.where(valid, (self.head + 1) % m, self.head))
        s_g = torch.where(new, own[1, 0], s_g)
        y_g = torch.where(new, own[2, 0], y_g)

        hg = self._inverse_hessian_times(g, s_g, y_g)
        first = self.iteration == 0
        size = torch.where(first, (1.0 / torch.linalg.vector_norm(g, 1)).clamp(max=1.0), torch.ones_like(g[0]))
        size = size * self.lr
        # No pixel moves by more than max_move in one step. torch.optim.LBFGS has no such bound,
        # and when the first pair is rejected (bf16 convolutions cannot see the tiny first step,
        # so y = 0) it steps lr·g, with gradients of order 1e4 per pixel: the image goes to inf.
        # Ordinary steps move pixels by a few units and never meet the bound.
        largest = torch.linalg.vector_norm(hg, math.inf).clamp_min(torch.finfo(g.dtype).tiny)
        size = torch.minimum(size, self.max_move / largest)
        torch.mul(hg, -size.to(hg.dtype), out=s)  # the move: the next pair's s
        x.view(-1).add_(s)
        self.iteration.add_(1)

    def _inverse_hessian_times(self, g: torch.Tensor, s_g: torch.Tensor, y_g: torch.Tensor) -> torch.Tensor:
        """H·g from the compact representation, with the pairs taken oldest first."""
        order = torch.argsort(self.age)  # empty slots (-1) first: their rows are zero and drop out
        empty = (self.age < 0)[order]
        sy = self.sy[order][:, order]
        r = sy.triu() + torch.diag(empty.double())  # an empty slot's 1 keeps R invertible
        d = torch.diagonal(sy)
        gamma = self.gamma
        a, b = s_g[order, None], gamma * y_g[order, None]
        u = torch.linalg.solve_triangular(r, a, upper=True)  # R⁻¹ Sᵀg
        w = d[:, None] * u + gamma * (self.yy[order][:, order] @ u) - b
        p = torch.linalg.solve_triangular(r.T, w, upper=False)  # R⁻ᵀ((D + gamma YᵀY)R⁻¹Sᵀg - gamma Yᵀg)
        coefficients = torch.zeros(2 * self.history, dtype=torch.float64, device=g.device)
        coefficients[: self.history].scatter_(0, order, p[:, 0])
        coefficients[self.history :].scatter_(0, order, -gamma * u[:, 0])
        stored = self.pairs[: 2 * self.history, : self.n]
        return torch.addmv(gamma.to(g.dtype) * g, stored.T, coefficients.to(g.dtype))
