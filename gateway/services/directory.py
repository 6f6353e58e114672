"""Looking users up: exact usernames to ids, ids to names (for starting chats, showing
members). Neither reveals who talks to whom; both are rate-limited per caller."""

from __future__ import annotations

from contracts.api import PublicUser
from gateway.domain.usernames import Username, canonical
from gateway.domain.users import User
from gateway.services.ports import UserStore


class Directory:
    def __init__(self, users: UserStore) -> None:
        self._users = users

    async def look_up(self, ids: list[int], names: list[Username]) -> list[PublicUser]:
        """The users found, in the order asked for; the ones not found are left out."""
        if ids:
            rank = {uid: i for i, uid in enumerate(ids)}
            found = await self._users.by_ids(ids)
            found.sort(key=lambda u: rank.get(u.id, len(rank)))
        else:
            by_name = {name.canonical: i for i, name in enumerate(names)}
            found = await self._users.by_usernames(names)
            found.sort(key=lambda u: by_name.get(_canonical(u), len(by_name)))
        return [PublicUser(id=u.id, username=u.username) for u in found]


def _canonical(user: User) -> str:
    return canonical(user.username)
