// The WebSocket: hello with the token and what the client has, reconnect on loss.

export class Live {
  constructor({ onFrame, onState, since }) {
    this.onFrame = onFrame;
    this.onState = onState;
    this.since = since;
    this.socket = null;
    this.delay = 500;
    this.stopped = true;
    this.timer = null;
    // A dead network can leave a socket open for minutes: the browser knows sooner.
    window.addEventListener("offline", () => this.interrupted());
    window.addEventListener("online", () => this.resume());
  }

  interrupted() {
    if (this.stopped) return;
    const socket = this.socket;
    this.socket = null;
    clearTimeout(this.timer);
    if (socket) socket.close();
    this.onState("reconnecting");
  }

  resume() {
    if (this.stopped || this.socket) return;
    clearTimeout(this.timer);
    this.connect();
  }

  start(token) {
    this.token = token;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000);
    this.socket = null;
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/v1/stream`);
    this.socket = socket;
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ type: "hello", token: this.token, since: this.since() }));
    });
    socket.addEventListener("message", (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "ready") {
        this.delay = 500;
        this.onState("live");
      }
      this.onFrame(frame);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket || this.stopped) return;
      if (event.code === 4001 || event.code === 4002) {
        this.onState("signed-out");
        return;
      }
      this.onState("reconnecting");
      this.timer = setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    });
  }
}
