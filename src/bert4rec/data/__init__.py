"""Data: MovieLens releases and their download, readers for releases and any ratings table, the in-memory and
out-of-core preparation (filters, stable time order, leave-one-out split), the item vocabulary and token types."""
