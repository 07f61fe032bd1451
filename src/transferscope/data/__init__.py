"""Image domains: a registry of named datasets, their splits, and the block-shuffle transform."""

from . import builtin  # noqa: F401  (registers the built-in domains; the registry imports no loader)
from .domain import DomainData, Split, check_split, load_domain, split_indices, split_multilabel
from .registry import DomainError, DomainInfo, RawDomain, get_domain_info, list_domains, register_domain
from .shuffle import block_permutation, block_shuffle, valid_block_sizes

__all__ = [
    "DomainData", "Split", "load_domain", "check_split", "split_indices", "split_multilabel", "DomainError",
    "DomainInfo", "RawDomain", "get_domain_info", "list_domains", "register_domain", "block_permutation", "block_shuffle",
    "valid_block_sizes",
]
