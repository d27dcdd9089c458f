"""``ticketing-queue [serve|migrate]``: the entry point of the image and of ``make up``."""

from ticketing_common.cli import service_main
from ticketing_queue.config import Settings
from ticketing_queue.main import MIGRATIONS_DIR, create_app


def main() -> None:
    service_main(Settings, create_app, migrations_dir=MIGRATIONS_DIR)


if __name__ == "__main__":
    main()
