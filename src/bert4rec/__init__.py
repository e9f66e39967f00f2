"""bert4rec: a BERT4Rec movie recommender — MovieLens data, training, exact evaluation, CLI and Python API."""

from bert4rec.errors import Bert4RecError, DataError

__version__ = "0.1.0"
__all__ = ["Bert4RecError", "DataError", "__version__"]
