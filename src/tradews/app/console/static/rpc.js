// JSON-RPC 2.0 over one WebSocket: requests with promises, notifications to a callback, and
// every frame in both directions handed to a log callback as its raw text.

export class RpcError extends Error {
  constructor(method, error) {
    super(error.message);
    this.method = method;
    this.code = error.code;
    this.data = error.data ?? null;
  }

  // One line for a person: the method, the server's message, its code and reason.
  describe() {
    const reason = this.data && this.data.reason ? ` ${this.data.reason}` : "";
    return `${this.method}: ${this.message} (${this.code}${reason})`;
  }
}

export class Connection {
  constructor(url, { onNotification, onClose, onLog }) {
    this.url = url;
    this.onNotification = onNotification;
    this.onClose = onClose;
    this.onLog = onLog;
    this.nextId = 0;
    this.pending = new Map();
    this.ws = null;
    this.opened = false;
  }

  // Resolves once the socket is open; rejects if it closes first.
  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onopen = () => {
        this.opened = true;
        resolve();
      };
      ws.onmessage = (event) => this.receive(event.data);
      ws.onclose = (event) => {
        for (const call of this.pending.values()) {
          call.reject(new Error(`${call.method}: the connection closed before the reply`));
        }
        this.pending.clear();
        if (!this.opened) reject(new Error(`cannot connect to ${this.url}`));
        this.onClose(event.code, event.reason, this.opened);
      };
    });
  }

  call(method, params) {
    const id = ++this.nextId;
    const message = { jsonrpc: "2.0", method, id };
    if (params !== undefined) message.params = params;
    const text = JSON.stringify(message);
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new Error(`${method}: not connected`));
        return;
      }
      this.pending.set(id, { method, resolve, reject });
      // The log shows every request as sent, except a login's secret.
      const shown = params && params.apiSecret ? { ...params, apiSecret: "(hidden)" } : params;
      this.onLog("out", shown === params ? text : JSON.stringify({ ...message, params: shown }));
      this.ws.send(text);
    });
  }

  receive(text) {
    this.onLog("in", text);
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    for (const one of Array.isArray(message) ? message : [message]) this.dispatch(one);
  }

  dispatch(message) {
    const call = message.id == null ? undefined : this.pending.get(message.id);
    if (call !== undefined) {
      this.pending.delete(message.id);
      if (message.error) call.reject(new RpcError(call.method, message.error));
      else call.resolve(message.result);
    } else if (typeof message.method === "string") {
      this.onNotification(message.method, message.params);
    }
  }

  close() {
    if (this.ws) this.ws.close(1000);
  }
}
