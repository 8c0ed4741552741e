"""f_I for graph-text tasks: a GNN (torch-geometric) that plays the image encoder's role.

The input is a torch_geometric `Batch` of subgraphs, one per example. Nodes 0 and 1 of each
subgraph are the two entities the sentence talks about (PGR: "does the sentence state a
relation between these two entities?"). The output has the image encoder's shape, with a mask:
a graph [CLS] read out from the two entities and the mean of all nodes, then every node.
"""
from __future__ import annotations

import torch
from torch import nn

MAX_EDGE_TYPES = 8


class GraphEncoder(nn.Module):
    """GIN layers with typed edges (GINEConv), residual and LayerNorm, over a batch of subgraphs.

    Batch fields: `x` either long (N, K), the indices of the K active entries of a multi-hot feature
    vector of size `node_features` (their embeddings are summed), or float (N, node_features);
    `edge_index` (2, E); `edge_type` long (E,) in [0, MAX_EDGE_TYPES) (optional, default 0); `batch`, `ptr`.

    forward(batch) -> (states (B, 1 + N_max, H), mask (B, 1 + N_max) bool): position 0 is the graph
    [CLS], MLP([h_a; h_b; h_a * h_b; mean_v h_v]) of the two entities a, b (nodes 0 and 1); then the
    nodes, zero-padded where the mask is False.
    """

    def __init__(self, node_features: int, hidden: int, layers: int, dropout: float = 0.0):
        super().__init__()
        from torch_geometric.nn import GINEConv

        if node_features < 1 or hidden < 1 or layers < 1:
            raise ValueError(f"node_features, hidden and layers must be positive, got {node_features}, {hidden}, {layers}")
        self.node_features, self.hidden_size = node_features, hidden
        self.feature_embedding = nn.Embedding(node_features, hidden)
        nn.init.normal_(self.feature_embedding.weight, std=0.1)
        self.input_norm = nn.LayerNorm(hidden)
        self.edge_embedding = nn.Embedding(MAX_EDGE_TYPES, hidden)
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden)), train_eps=True)
            for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Sequential(nn.Linear(4 * hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.LayerNorm(hidden))

    @classmethod
    def from_config(cls, config) -> "GraphEncoder":
        """From a ModelConfig: node_features, hidden, graph_layers, dropout."""
        return cls(config.node_features, config.hidden, config.graph_layers, config.dropout)

    def embed_nodes(self, x: torch.Tensor) -> torch.Tensor:
        """Node features (N, K) long indices or (N, node_features) float -> (N, H)."""
        w = self.feature_embedding.weight
        if x.dtype in (torch.long, torch.int32, torch.int64):
            if x.dim() != 2:
                raise ValueError(f"integer node features must be (N, K) indices, got shape {tuple(x.shape)}")
            if x.numel() and (x.min() < 0 or x.max() >= self.node_features):
                raise ValueError(f"node feature indices must lie in [0, {self.node_features}), "
                                 f"got [{int(x.min())}, {int(x.max())}]; is ModelConfig.node_features right?")
            return nn.functional.embedding(x, w).sum(1)
        if x.dim() != 2 or x.shape[1] != self.node_features:
            raise ValueError(f"float node features must have shape (N, {self.node_features}), got {tuple(x.shape)}")
        return x.to(w.dtype) @ w

    def forward(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        from torch_geometric.utils import to_dense_batch

        if not all(hasattr(batch, k) for k in ("x", "edge_index", "batch", "ptr")):
            raise TypeError("GraphEncoder expects a torch_geometric Batch (torch_geometric.data.Batch.from_data_list), "
                            f"got {type(batch).__name__}")
        ptr = batch.ptr
        if (ptr.diff() < 2).any():
            raise ValueError("every subgraph needs at least 2 nodes: nodes 0 and 1 are the entities the text is about")
        edge_type = getattr(batch, "edge_type", None)
        if edge_type is None:
            edge_type = torch.zeros(batch.edge_index.shape[1], dtype=torch.long, device=ptr.device)
        elif edge_type.numel() and (edge_type.min() < 0 or edge_type.max() >= MAX_EDGE_TYPES):
            raise ValueError(f"edge_type must lie in [0, {MAX_EDGE_TYPES})")
        h = self.input_norm(self.embed_nodes(batch.x))
        e = self.edge_embedding(edge_type)
        for conv, norm in zip(self.convs, self.norms):
            h = norm(h + self.dropout(conv(h, batch.edge_index, e)))
        nodes, mask = to_dense_batch(h, batch.batch, batch_size=len(ptr) - 1)  # (B, N_max, H), (B, N_max)
        a, b = h[ptr[:-1]], h[ptr[:-1] + 1]
        mean = nodes.sum(1) / mask.sum(1, keepdim=True)
        cls = self.readout(torch.cat([a, b, a * b, mean], dim=-1))
        states = torch.cat([cls[:, None], nodes], dim=1)
        mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        return states, mask
