"""`python -m serving.proto`: (re)generate the gRPC stubs of storefront.proto."""

from __future__ import annotations

from serving.proto.build import generate


def main() -> None:
    for path in generate(force=True):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
