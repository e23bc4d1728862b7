from .semillie import SemiLLIE, unsupervised_weight

__all__ = ['SemiLLIE', 'unsupervised_weight']
