"""Pieces of the HTTP fuzzer (hil/fuzz_http.py): hostile values, platform messages signed the way each platform
signs (written from /work/shared/protocols, not from lanectl's codecs), and malformed HTTP on a raw socket."""
