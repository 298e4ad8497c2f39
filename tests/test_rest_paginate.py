"""Paginators: from a request and its response, the next request or the end."""

from __future__ import annotations

import pytest

from etl.errors import PermanentSourceError
from etl.rest.paginate import Request, first, next_request
from etl.rest.spec import Paginator


def test_link_header_follows_rel_next_until_it_is_absent():
    """The next URL comes whole from the Link header; no next relation ends the stream."""
    p = Paginator(type="link_header")
    link = '<http://x/i?page=2>; rel="next", <http://x/i?page=9>; rel="last"'
    assert next_request(p, Request("http://x/i"), {"link": link}, [], 30) == Request(
        "http://x/i?page=2"
    )
    assert next_request(p, Request("http://x/i?page=9"), {}, [], 30) is None


def test_cursor_in_body_is_sent_as_a_parameter_and_stops_when_empty():
    """meta.next goes into ?cursor=; a null cursor or an empty page ends the stream."""
    p = Paginator(type="cursor", cursor_path="meta.next", param="cursor")
    req = Request("http://x/e", (("limit", "10"),))
    nxt = next_request(p, req, {}, {"meta": {"next": "abc"}}, 10)
    assert nxt == Request("http://x/e", (("limit", "10"), ("cursor", "abc")))
    assert next_request(p, nxt, {}, {"meta": {"next": None}}, 10) is None


def test_offset_advances_by_the_limit_and_stops_on_a_short_page():
    """offset=0,100,200…; a page with fewer records than the limit is the last."""
    p = Paginator(type="offset", limit=100)
    req = first(p, Request("http://x/r"))
    assert dict(req.params) == {"offset": "0", "limit": "100"}
    nxt = next_request(p, req, {}, [], 100)
    assert nxt is not None and dict(nxt.params)["offset"] == "100"
    assert next_request(p, nxt, {}, [], 99) is None


def test_page_number_counts_from_start_and_stops_on_an_empty_page():
    """page=1,2,…; an empty page ends the stream."""
    p = Paginator(type="page_number", param="page", start=1)
    req = first(p, Request("http://x/r"))
    nxt = next_request(p, req, {}, [], 5)
    assert nxt is not None and dict(nxt.params)["page"] == "2"
    assert next_request(p, nxt, {}, [], 0) is None


def test_a_paginator_that_returns_the_same_page_is_an_error_not_a_loop():
    """An API that hands back the same cursor forever stops the stream with a message."""
    p = Paginator(type="cursor", cursor_path="next", param="c")
    req = Request("http://x/e", (("c", "same"),))
    with pytest.raises(PermanentSourceError, match="same page"):
        next_request(p, req, {}, {"next": "same"}, 5)


def test_a_request_survives_its_checkpoint_as_json():
    """What is stored with a page reads back as the same request."""
    req = Request("http://x/e?a=1", (("since", "2026-01-01T00:00:00Z"),))
    assert Request.from_json(req.to_json()) == req
    assert Request.from_json({"nonsense": 1}) is None
