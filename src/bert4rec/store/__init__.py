"""The event store: users, movies and their events in SQLite (embedded) or PostgreSQL, for a server whose
recommendations follow what users do (``bert4rec serve --db``) and for exporting what they did to train on."""

from bert4rec.store.database import DB_ENV, connect, database_url, migrate
from bert4rec.store.events import Event, EventStore, History, MovieRecord, Written
from bert4rec.store.transfer import Transferred, export_dataset, import_dataset, prepare_from_store

__all__ = ["DB_ENV", "Event", "EventStore", "History", "MovieRecord", "Transferred", "Written", "connect",
           "database_url", "export_dataset", "import_dataset", "migrate", "prepare_from_store"]
