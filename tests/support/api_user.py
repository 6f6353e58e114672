"""Clients of the gateway's REST API in end-to-end tests: a thin one, and a signed-up
user."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.support.faults import PASSWORD


class Api:
    """A thin client: every call returns (status, JSON body)."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url

    async def call(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.url + path, headers=headers, **kwargs) as resp:
            assert resp.content_type == "application/json", await resp.text()
            return resp.status, await resp.json()

    async def sign_up(self, username: str) -> dict[str, Any]:
        body = {"username": username, "password": "secret1", "passwordConfirm": "secret1"}
        status, token = await self.call("POST", "/v1/auth/sign-up", json={**body, "gender": "f"})
        assert status == 201, token
        return dict(token)


class User:
    def __init__(self, http: aiohttp.ClientSession, url: str, token: dict[str, Any]) -> None:
        self.http, self.url = http, url
        self.id: int = token["userId"]
        self.token: str = token["token"]
        self.headers = {"Authorization": f"Bearer {token['token']}"}

    @classmethod
    async def sign_up(cls, http: aiohttp.ClientSession, url: str, name: str) -> User:
        body = {"username": name, "password": PASSWORD, "passwordConfirm": PASSWORD}
        async with http.post(f"{url}/v1/auth/sign-up", json={**body, "gender": "f"}) as resp:
            assert resp.status == 201, await resp.text()
            return cls(http, url, await resp.json())

    async def call(self, method: str, path: str, url: str | None = None, **kw: Any) -> Any:
        async with self.http.request(
            method, (url or self.url) + path, headers=self.headers, **kw
        ) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.json()

    async def chat_with(self, *others: User) -> str:
        """A new chat of this user and `others`; its id."""
        users = [self.id, *(o.id for o in others)]
        return (await self.call("POST", "/v1/chats", json={"users": users}))["id"]

    async def post(self, cid: str, text: str, url: str | None = None) -> dict[str, Any]:
        return await self.call("POST", f"/v1/chats/{cid}/messages", url=url, json={"txt": text})

    async def history(self, cid: str) -> list[dict[str, Any]]:
        """Every message of the chat in seq order, paged forward with afterSeq."""
        found: list[dict[str, Any]] = []
        while True:
            after = found[-1]["seq"] if found else 0
            page = await self.call("GET", f"/v1/chats/{cid}/messages?afterSeq={after}&limit=200")
            found += sorted(page["data"], key=lambda m: m["seq"])
            if page["nextCursor"] is None:
                return found
