"""Helpers for admin tests: staff users in the staff groups, and the messages a page showed."""

from typing import Any

from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.test import Client


def staff_user(username: str, *groups: str) -> User:
    """A staff user (not a superuser) in the named staff groups."""
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.groups.add(*Group.objects.filter(name__in=groups))
    assert user.groups.count() == len(groups), f"missing staff group among {groups}"
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]
