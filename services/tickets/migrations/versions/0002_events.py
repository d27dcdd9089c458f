"""Events (the shows tickets are sold for) and the event a ticket belongs to.

- ``events``: owned by the user who created it, versioned like tickets; ``waiting_room`` is decided once, at
  creation (its sale opens later than that moment), and never changes.
- ``tickets.event_id``: nullable (a ticket may belong to no event), a foreign key, chosen at creation.
- Indexes: the upcoming listing walks ``ix_events_upcoming (starts_at, id)``; the search (``ILIKE`` on name or
  venue) uses trigram GIN indexes (``pg_trgm``, a trusted extension shipped with PostgreSQL's contrib: the
  database owner may create it); an event's available tickets are listed from ``ix_tickets_event_available`` and
  counted from ``ix_tickets_event``.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "events",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("venue", sa.String(200), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("on_sale_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_per_buyer", sa.Integer, nullable=False),
        sa.Column("waiting_room", sa.Boolean, nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.CheckConstraint("char_length(name) BETWEEN 1 AND 200", name="ck_events_name_length"),
        sa.CheckConstraint("char_length(venue) BETWEEN 1 AND 200", name="ck_events_venue_length"),
        sa.CheckConstraint("max_per_buyer BETWEEN 1 AND 100", name="ck_events_max_per_buyer_range"),
        sa.CheckConstraint("on_sale_at <= starts_at", name="ck_events_on_sale_before_start"),
        sa.CheckConstraint("version >= 0", name="ck_events_version_not_negative"),
    )
    # The listing: events not started yet, soonest first, keyset-paginated on (starts_at, id).
    op.execute("CREATE INDEX ix_events_upcoming ON events (starts_at, id)")
    # The search: name or venue ILIKE '%q%', which a trigram index serves (a B-tree cannot: the pattern is unanchored).
    # fastupdate off: events are written rarely and searched often; with the default, rows inserted since the last
    # vacuum wait in the index's pending list, which every search reads through (the planner then prefers a scan).
    op.execute("CREATE INDEX ix_events_name_trgm ON events USING gin (name gin_trgm_ops) WITH (fastupdate = off)")
    op.execute("CREATE INDEX ix_events_venue_trgm ON events USING gin (venue gin_trgm_ops) WITH (fastupdate = off)")

    op.add_column("tickets", sa.Column("event_id", sa.Uuid, nullable=True))
    op.create_foreign_key("fk_tickets_event_id_events", "tickets", "events", ["event_id"], ["id"])
    # An event's tickets for sale, newest first: the listing's order, within one event.
    op.execute(
        "CREATE INDEX ix_tickets_event_available ON tickets (event_id, created_at DESC, id DESC) "
        "WHERE order_id IS NULL AND event_id IS NOT NULL"
    )
    # Every ticket of an event (the counts of GET /api/events/:id, the foreign key's look-ups).
    op.execute("CREATE INDEX ix_tickets_event ON tickets (event_id) WHERE event_id IS NOT NULL")


def downgrade() -> None:
    op.drop_index("ix_tickets_event", table_name="tickets")
    op.drop_index("ix_tickets_event_available", table_name="tickets")
    op.drop_constraint("fk_tickets_event_id_events", "tickets", type_="foreignkey")
    op.drop_column("tickets", "event_id")
    op.drop_index("ix_events_venue_trgm", table_name="events")
    op.drop_index("ix_events_name_trgm", table_name="events")
    op.drop_index("ix_events_upcoming", table_name="events")
    op.drop_table("events")
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
