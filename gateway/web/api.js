// Every network call of the client: the REST API, its error codes, the token.

const TOKEN_KEY = "dialogue.token";
const OFFSET_KEY = "dialogue.clockOffset";

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export const SESSION_ENDED = "Your session has ended. Please sign in again.";

// What a person should read for each code the API can answer.
const TEXT = {
  4090: () => "That username is taken.",
  4011: () => "Wrong username or password.",
  4010: () => "Please sign in.",
  session: () => SESSION_ENDED,
  network: () => "Network problem. Check your connection.",
  4290: (e) => `Too many attempts. Try again in ${e.retryAfter || "a few"} s.`,
  4031: () => "You are not a member of that chat.",
  4003: () => "Not sent: a message is 1 to 4096 characters, not blank.",
  5030: () => "The service is unavailable. Try again shortly.",
  5031: () => "May not have been sent. Retry.",
  5032: () => "Accounts are unavailable. Try again shortly.",
};

// A refusal the same request would get again: a retry cannot help (408 and 429 can pass).
export function refused(error) {
  const status = error instanceof ApiError ? error.status : 0;
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

export function explain(error) {
  if (!(error instanceof ApiError)) return "Network problem. Check your connection.";
  const text = TEXT[error.code];
  return text ? text(error) : error.message;
}

// Set by the wiring: what to do when a signed-in call is refused for its token (expired,
// the account's sign-in revoked, a refresh refused). Sign-in and sign-up answer 401 for
// bad credentials, which is not that.
export const hooks = { sessionEnded: () => {} };

export const session = {
  generation: 0, // +1 at each sign-in and sign-out: answers for an earlier session are dropped
  // ms the server's clock is ahead of this one (from its Date header). Kept over a reload,
  // where the saved token's life is judged before any answer came: by this clock alone, a
  // computer running fast ended a session that had minutes left (found in review).
  offset: Number(sessionStorage.getItem(OFFSET_KEY)) || 0,
  measured(offset) {
    this.offset = offset;
    sessionStorage.setItem(OFFSET_KEY, String(offset));
  },
  get token() {
    return this.saved()?.token ?? null;
  },
  saved() {
    const raw = sessionStorage.getItem(TOKEN_KEY);
    return raw ? JSON.parse(raw) : null;
  },
  // A new session (sign-in, sign-up).
  save(token) {
    this.generation += 1;
    this.renew(token);
  },
  // A new token of the same session: answers on their way for the old one still count.
  renew(token) {
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify(token));
  },
  clear() {
    this.generation += 1;
    sessionStorage.removeItem(TOKEN_KEY);
  },
  // Milliseconds until the token expires, by the server's clock (0 or less: expired).
  left() {
    const saved = this.saved();
    return saved ? saved.expiresAt * 1000 - Date.now() - this.offset : 0;
  },
};

async function call(method, path, body, extraHeaders = {}, again = false) {
  const token = session.token;
  const generation = session.generation;
  const headers = { ...extraHeaders };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "network problem");
  }
  const date = Date.parse(response.headers.get("Date"));
  if (date) session.measured(date - Date.now());
  const data = await response.json().catch(() => ({}));
  // An answer for a session that ended meanwhile (signed out, perhaps someone else in):
  // its data and its 401 belong to nobody here. A renewed token is the same session.
  if (session.generation !== generation) throw new ApiError(0, "session", "session ended");
  if (response.status === 401 && !path.startsWith("/v1/auth/sign")) {
    // Sent with a token that a renewal replaced while the request was on its way, and
    // that expired before the server read it: the session goes on with the new token
    // (a 401 means the server did nothing, so sending again is safe). Once only.
    if (!again && token && session.token !== token && session.left() > 0) {
      return call(method, path, body, extraHeaders, true);
    }
    hooks.sessionEnded();
    throw new ApiError(401, "session", "session ended");
  }
  if (!response.ok) {
    const retry = Number(response.headers.get("Retry-After")) || 0;
    throw new ApiError(response.status, Number(data.code) || response.status, data.message || response.statusText, retry);
  }
  return data;
}

const query = (pairs) => new URLSearchParams(pairs).toString();

export const api = {
  signUp: (username, password, gender) =>
    call("POST", "/v1/auth/sign-up", { username, password, passwordConfirm: password, gender }),
  signIn: (username, password) => call("POST", "/v1/auth/sign-in", { username, password }),
  refresh: () => call("POST", "/v1/auth/refresh"),
  chats: (cursor) => call("GET", `/v1/chats?${query(cursor ? { limit: 50, cursor } : { limit: 50 })}`),
  chat: (cid) => call("GET", `/v1/chats/${cid}`),
  createChat: (users) => call("POST", "/v1/chats", { users }),
  messages: (cid, params) => call("GET", `/v1/chats/${cid}/messages?${query(params)}`),
  post: (cid, txt, key) => call("POST", `/v1/chats/${cid}/messages`, { txt }, { "Idempotency-Key": key }),
  read: (cid, seq) => call("PUT", `/v1/chats/${cid}/read`, { seq }),
  usersByName: (names) => call("GET", `/v1/users?${query(names.map((n) => ["username", n]))}`),
  usersById: (ids) => call("GET", `/v1/users?${query(ids.map((i) => ["id", String(i)]))}`),
};
