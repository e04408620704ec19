"""A receiver host as the coordinator sees it: its ordinary REST API, called over HTTP."""

from __future__ import annotations

from urllib.parse import urlparse

import requests


class HostError(RuntimeError):
    """A host refused a command (its message) or did not answer."""


class HostLink:
    """Commands to one receiver host (``std_daq_server --modules …``) at ``url``."""

    def __init__(self, url: str, timeout: float = 5.0, token: str | None = None):
        self.url = url.rstrip("/")
        parsed = urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"a receiver host is an http://host:port URL, not '{url}'")
        self.name = parsed.netloc
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, key: str, timeout: float | None = None) -> object:
        return self._call("GET", path, key, None, timeout)

    def post(self, path: str, key: str, body: dict | None = None, timeout: float | None = None) -> object:
        return self._call("POST", path, key, body, timeout)

    def _call(self, method: str, path: str, key: str, body: dict | None, timeout: float | None) -> object:
        try:
            response = requests.request(
                method, self.url + path, json=body, headers=self._headers, timeout=timeout or self._timeout
            )
            answer = response.json()
        except requests.RequestException as error:
            raise HostError(f"receiver host {self.name} is not answering ({type(error).__name__})") from None
        except ValueError:
            raise HostError(f"receiver host {self.name} answered {path} with no JSON") from None
        if not isinstance(answer, dict) or answer.get("status") != "ok" or key not in answer:
            message = answer.get("message", "") if isinstance(answer, dict) else str(answer)[:200]
            raise HostError(f"receiver host {self.name}: {message}")
        return answer[key]
