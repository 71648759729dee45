// express-session on connect-redis: the session design most Node apps run, as a peer in
// loadtest/run.sh. Every request that carries a session cookie loads the session from Redis
// (GET) and, with the recommended `resave: false`, refreshes its TTL (EXPIRE).
//
//   PORT=0 REDIS_URL=redis://127.0.0.1:6379/ node server.js
//
// POST /login {"username": ...} starts a session (no password check: the load test measures the
// request path, not login). GET /me reads it: 200 {"user"} or 401.
import express from "express";
import session from "express-session";
import { RedisStore } from "connect-redis";
import { createClient } from "redis";

const port = Number(process.env.PORT ?? 0);
const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379/";

const client = createClient({ url: redisUrl });
client.on("error", (err) => console.error("redis:", err.message));
await client.connect();

const app = express();
app.use(express.json());
app.use(
  session({
    store: new RedisStore({ client, prefix: "load:" }),
    name: "session",
    // A fixed secret is fine for a loopback benchmark; a real app reads it from its config.
    secret: "load-test-secret-not-for-production",
    resave: false,
    saveUninitialized: false,
    cookie: { httpOnly: true, sameSite: "lax", secure: false, maxAge: 30 * 60 * 1000 },
  }),
);

app.post("/login", (req, res, next) => {
  const username = req.body && req.body.username;
  if (typeof username !== "string" || username === "") {
    return res.status(400).json({ error: "username required", code: "BAD_REQUEST" });
  }
  // A fresh id on login, as the express-session docs advise against fixation.
  req.session.regenerate((err) => {
    if (err) return next(err);
    req.session.user = username;
    req.session.save((err) => (err ? next(err) : res.json({ user: username })));
  });
});

app.get("/me", (req, res) => {
  if (!req.session.user) {
    return res.status(401).json({ error: "no session", code: "NO_SESSION" });
  }
  res.json({ user: req.session.user });
});

// PORT=0 takes a free port; the harness reads the line below to find it.
const server = app.listen(port, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});

const stop = () => {
  server.close();
  client.quit().finally(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
