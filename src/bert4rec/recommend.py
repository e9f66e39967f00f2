"""Deprecated home of the Recommender, kept so that code written against it keeps working: import from
``bert4rec`` (``from bert4rec import Recommender, Filters``) or ``bert4rec.serving.recommender`` instead."""

import warnings

from bert4rec.serving.recommender import Filters, Recommendations, Recommender, history_types  # noqa: F401

warnings.warn("bert4rec.recommend is now bert4rec.serving.recommender; import Recommender and Filters from bert4rec",
              DeprecationWarning, stacklevel=2)
