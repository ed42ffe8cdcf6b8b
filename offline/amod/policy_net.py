"""A permutation-equivariant actor-critic for SB3 (PPO): one small MLP shared by every region (or pair).

Networks over a graph's nodes learn faster when every node is scored by the same weights from its
own features and a summary of all nodes (DeepSets; the graph networks of the AMoD literature share
weights the same way). The observation is laid out as n_items blocks of item_dim features
followed by global_dim features; the actor scores each item with

    h_i = MLP([x_i, globals, mean_j x_j]) ∈ R^H,   logits_i = W h_i + b ∈ R^out_per_item

and `action_index` picks the action vector's entries out of the (n_items · out_per_item) logits
(for example f on the edges i ≠ j and g on the OD pairs, both items = ordered pairs). The critic
reads the mean of the h_i with the globals. SB3's Gaussian (PPO) sits on top, unchanged.

Use: PPO(ItemwisePolicy, env, policy_kwargs=dict(n_items=..., item_dim=..., global_dim=...,
out_per_item=1, action_index=None, hidden=(64, 64))).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

__all__ = ["ItemwisePolicy"]


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers)


class _ItemwiseExtractor(nn.Module):
    def __init__(self, n_items: int, item_dim: int, global_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.n_items, self.item_dim, self.global_dim = n_items, item_dim, global_dim
        self.node = _mlp([2 * item_dim + global_dim, *hidden])
        self.H = hidden[-1]
        self.critic = _mlp([self.H + global_dim + item_dim, *hidden])
        self.latent_dim_pi = n_items * self.H
        self.latent_dim_vf = hidden[-1]

    def _split(self, x: torch.Tensor):
        items = x[:, :self.n_items * self.item_dim].reshape(-1, self.n_items, self.item_dim)
        glob = x[:, self.n_items * self.item_dim:]
        return items, glob

    def _nodes(self, x: torch.Tensor):
        items, glob = self._split(x)
        mean = items.mean(dim=1, keepdim=True).expand(-1, self.n_items, -1)
        g = glob.unsqueeze(1).expand(-1, self.n_items, -1)
        return self.node(torch.cat([items, g, mean], dim=-1)), items, glob

    def forward_actor(self, x: torch.Tensor) -> torch.Tensor:
        return self._nodes(x)[0].reshape(x.shape[0], -1)

    def _critic(self, h: torch.Tensor, items: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        return self.critic(torch.cat([h.mean(dim=1), glob, items.mean(dim=1)], dim=-1))

    def forward_critic(self, x: torch.Tensor) -> torch.Tensor:
        return self._critic(*self._nodes(x))

    def forward(self, x: torch.Tensor):
        # actor and critic read the same per-item MLP: evaluate it once (PPO's update calls this;
        # with 256 pairs for end-to-end RL the item MLP is most of the training time)
        h, items, glob = self._nodes(x)
        return h.reshape(x.shape[0], -1), self._critic(h, items, glob)


class _ItemwiseHead(nn.Module):
    """(B, n_items · H) → per-item Linear(H, out) → the action entries `index` of the (B, n_items · out) logits."""

    def __init__(self, n_items: int, H: int, out_per_item: int, index: Sequence[int] | None) -> None:
        super().__init__()
        self.n_items, self.H, self.out = n_items, H, out_per_item
        self.lin = nn.Linear(H, out_per_item)
        idx = np.arange(n_items * out_per_item) if index is None else np.asarray(index, dtype=np.int64)
        self.register_buffer("index", torch.as_tensor(idx, dtype=torch.long))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        z = self.lin(latent.reshape(-1, self.n_items, self.H)).reshape(latent.shape[0], -1)
        return z.index_select(1, self.index)


class ItemwisePolicy(ActorCriticPolicy):
    """ActorCriticPolicy whose actor and critic share one MLP over items (module docstring)."""

    def __init__(self, observation_space, action_space, lr_schedule, *, n_items: int, item_dim: int,
                 global_dim: int, out_per_item: int = 1, action_index: Sequence[int] | None = None,
                 hidden: Sequence[int] = (64, 64), **kwargs) -> None:
        if observation_space.shape[0] != n_items * item_dim + global_dim:
            raise ValueError(f"observation has {observation_space.shape[0]} entries, expected "
                             f"n_items·item_dim + global_dim = {n_items * item_dim + global_dim}")
        n_act = action_space.shape[0]
        if (action_index is None and n_act != n_items * out_per_item) or \
                (action_index is not None and len(action_index) != n_act):
            raise ValueError(f"action has {n_act} entries; action_index must select that many logits")
        self._item_cfg = dict(n_items=n_items, item_dim=item_dim, global_dim=global_dim,
                              out_per_item=out_per_item, action_index=None if action_index is None else
                              [int(i) for i in action_index], hidden=tuple(int(h) for h in hidden))
        kwargs.pop("net_arch", None)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        c = self._item_cfg
        self.mlp_extractor = _ItemwiseExtractor(c["n_items"], c["item_dim"], c["global_dim"], c["hidden"])

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        c = self._item_cfg
        self.action_net = _ItemwiseHead(c["n_items"], self.mlp_extractor.H, c["out_per_item"], c["action_index"])
        # the optimizer must see the replaced head's parameters
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict:
        data = super()._get_constructor_parameters()
        data.update(self._item_cfg)
        data.pop("net_arch", None)
        return data
