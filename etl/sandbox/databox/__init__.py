"""The sandbox's Databox-compatible Ingestion API (v1), served under ``/databox``."""
