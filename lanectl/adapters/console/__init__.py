"""The booth console (docs/console.md): operator accounts, sessions, the live lane feed and the aiohttp routes,
served on the LAN listener only.

    accounts.py   the accounts file: scrypt hashes, roles, atomic writes (`lanectl console-user`)
    sessions.py   login rate limiting, sessions with CSRF tokens and idle logout
    live.py       each lane's view for the page, numbered changes fed from the lane runners
    server.py     the routes: login / logout, the page and its assets, SSE /console/events, actions
"""
