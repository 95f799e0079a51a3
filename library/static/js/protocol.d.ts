// Wire types of the book library's comments protocol (docs/protocol.md, docs/asyncapi.json).
// Generated from the Rust types of shared-proto through their JSON Schemas
// (docs/schemas/wire.schema.json). Do not edit: regenerate with
//   cargo run -p shared-proto --features schema --example gen-schemas

/**
 * `ack {comment}` (after a post or an edit), `ack {id, reactions}` (after a react) or
 * `ack {id}` (after a delete).
 */
export type Ack = {
  /** The comment. */
  comment: Comment;
} | {
  /** The comment's id. */
  id: string;
  /** Its counts now. */
  reactions: Reactions;
} | {
  /** The id. */
  id: string;
};

/** Who wrote a comment: `{"id": username, "name": full name}`. */
export type Author = {
  /** The author's username. */
  id: string;
  /** The author's full name at the time of writing. */
  name: string;
};

/** A book as the API returns it. */
export type Book = {
  /** Authors, free text. */
  authors: string;
  /** Description, free text. */
  description: string;
  /** A number (the original app's "favorite" field). */
  favorite: number;
  /** Stored book file name, empty when none. */
  fileNameBook: string;
  /** Stored cover file name (under the uploads folder), empty when none. */
  fileNameCover: string;
  /** The book file's original name (used for downloads). */
  fileOriginalBook: string;
  /** The cover's original file name. */
  fileOriginalCover: string;
  /** Sequential numeric id; as a string it is the book's comment room. */
  id: number;
  /** Title. */
  title: string;
  /** View count from `counter`, when it answered. */
  views?: number | null;
};

/** A book id: 1..64 letters, digits, '_' and '-'. */
export type BookId = string;

/** Token claims: `sub` (username), `name` (full name), `role`, `exp` (Unix seconds). */
export type Claims = {
  /** Expiry, Unix seconds. */
  exp: number;
  /** Issued at, Unix seconds. */
  iat?: number | null;
  /** The user's full name, shown beside their comments. */
  name: string;
  /** What the user may do. */
  role: Role;
  /** The username. */
  sub: Username;
};

/** A decoded client frame. */
export type ClientFrame = ({
  /** Echoed in the reply. */
  ref?: Ref | null;
}) & ({
  payload: Subscribe;
  type: "subscribe";
} | {
  payload: RoomOnly;
  type: "unsubscribe";
} | {
  payload: Post;
  type: "post";
} | {
  payload: Delete;
  type: "delete";
} | {
  payload: History;
  type: "history";
} | {
  payload: Empty;
  type: "ping";
} | {
  payload: Edit;
  type: "edit";
} | {
  payload: React;
  type: "react";
} | {
  payload: RoomOnly;
  type: "typing";
});

/** A clientId: 1..64 visible ASCII characters. */
export type ClientId = string;

/** A request from a client. */
export type ClientMessage = {
  payload: Subscribe;
  type: "subscribe";
} | {
  payload: RoomOnly;
  type: "unsubscribe";
} | {
  payload: Post;
  type: "post";
} | {
  payload: Delete;
  type: "delete";
} | {
  payload: History;
  type: "history";
} | {
  payload: Empty;
  type: "ping";
} | {
  payload: Edit;
  type: "edit";
} | {
  payload: React;
  type: "react";
} | {
  payload: RoomOnly;
  type: "typing";
};

/**
 * A stored comment as clients see it. The v3 fields (`replyTo`, `editedAt`, `reactions`) are
 * always sent (`null`, `null`, `{}` when unset) and read as those when missing, so comments
 * stored before v3 keep working.
 */
export type Comment = {
  /** Who wrote it. */
  author: Author;
  /** RFC 3339 UTC with milliseconds. */
  createdAt: string;
  /** When the text was last edited (RFC 3339 UTC with milliseconds), or `null`. */
  editedAt: string | null;
  /** Opaque unique id. */
  id: string;
  /** Reaction counts, only those above 0. */
  reactions: Reactions;
  /** The id of the top-level comment of the same room this one answers, or `null`. */
  replyTo: string | null;
  /** The room it belongs to. */
  room: RoomId;
  /** Position in its room; grows strictly in storage order. */
  seq: number;
  /** Plain text, trimmed, unescaped. */
  text: string;
};

/** `comment_deleted {room, id}`. */
export type CommentDeleted = {
  /** The deleted comment's id. */
  id: string;
  /** The room. */
  room: RoomId;
};

/** `comment_edited {room, comment}`. */
export type CommentEdited = {
  /** The comment with its new text and `editedAt`. */
  comment: Comment;
  /** The room. */
  room: RoomId;
};

/** A comment id: 1..128 letters, digits, '_' and '-'. */
export type CommentId = string;

/** Comment text: 1..2000 Unicode code points after trimming (empty: bad_request, longer: too_large); plain text, never HTML. */
export type CommentText = string;

/** `{"bookId": "1", "count": 8}`. */
export type CountResponse = {
  /** The book. */
  bookId: BookId;
  /** Its view count. */
  count: number;
};

/** `{"counts": {"1": 8, "2": 0}}`. */
export type CountsResponse = {
  /** Count per requested id. */
  counts: {
    [key: string]: number;
  };
};

/** `delete {room, id}`. */
export type Delete = {
  /** The comment's id. */
  id: string;
  /** The room. */
  room: RoomId;
};

/** `edit {room, id, text}`: new text for one's own comment. */
export type Edit = {
  /** The comment's id. */
  id: CommentId;
  /** The room. */
  room: RoomId;
  /** The new text, trimmed (rules as for `post`). */
  text: CommentText;
};

/** One of the six reactions, the emoji itself. The server always sends the heart as U+2764 U+FE0F; in requests a bare U+2764 is read as the same heart. */
export type Emoji = "👍" | "❤️" | "😂" | "😮" | "😢" | "🎉";

/** An empty payload, `{}`. */
export type Empty = Record<string, unknown>;

/** `{"error": {"code": "...", "message": "..."}}`: every HTTP error body. */
export type ErrorBody = {
  /** The error. */
  error: ErrorDetail;
};

/** Machine-readable error code, `snake_case` on the wire. */
export type ErrorCode = "bad_request" | "unauthorized" | "forbidden" | "not_found" | "rate_limited" | "too_large" | "unavailable" | "not_subscribed" | "method_not_allowed" | "internal";

/** `{"code": "...", "message": "..."}`. */
export type ErrorDetail = {
  /** What went wrong, for programs. */
  code: ErrorCode;
  /** What went wrong, for people. */
  message: string;
};

/** `error {code, message}`. */
export type ErrorPayload = {
  /** Machine-readable code. */
  code: ErrorCode;
  /** Human-readable message. */
  message: string;
};

/** `history {room, before, limit?}`. */
export type History = {
  /** Comments with a `seq` below this. */
  before: number;
  /** Newest N (1..=200, default 50). */
  limit?: number;
  /** The room. */
  room: RoomId;
};

/** `history {room, comments, more}`. */
export type HistoryPage = {
  /** Oldest first. */
  comments: Comment[];
  /** Signed-in connections only: the user's own reactions to these comments (`{}` when none). */
  mine?: Mine;
  /** Older ones exist. */
  more: boolean;
  /** The room. */
  room: RoomId;
};

/** `POST /api/v1/user/login` body. */
export type LoginRequest = {
  /** Password. */
  password: string;
  /** Username. */
  username: string;
};

/** `{"message": "..."}`. */
export type MessageBody = {
  /** What happened. */
  message: string;
};

/** The signed-in user's own reactions: comment id -> the emoji this user gave it, each once (only comments of the reply with at least one; `{}` when none). */
export type Mine = {
  [key: string]: Emoji[];
};

/** `notice {text, from: "admin", room?}`. */
export type Notice = {
  /** Always `admin`. */
  from: string;
  /** The room it was sent to, if any. */
  room?: RoomId;
  /** The notice. */
  text: string;
};

/** `post {room, text, clientId?, replyTo?}`. */
export type Post = {
  /** Idempotency key, scoped to the user. */
  clientId?: ClientId | null;
  /** The comment of the same room this one answers. */
  replyTo?: CommentId | null;
  /** The room. */
  room: RoomId;
  /** Trimmed text. */
  text: CommentText;
};

/**
 * `presence {room, readers, users}`; also the body of `GET /rooms/{room}/presence` (without
 * `room`, see [`PresenceCounts`]).
 */
export type Presence = {
  /** Distinct readers on all instances: each signed-in user once, each anonymous connection once. */
  readers: number;
  /** The room. */
  room: RoomId;
  /** The signed-in readers, at most [`MAX_PRESENCE_USERS`], earliest first. */
  users: UserRef[];
};

/** `GET /rooms/{room}/presence` → `{"readers", "users"}`. */
export type PresenceCounts = {
  /** Distinct readers on all instances. */
  readers: number;
  /** The signed-in readers, at most [`MAX_PRESENCE_USERS`], earliest first. */
  users: UserRef[];
};

/** A user as the API shows them (never the password hash). */
export type PublicUser = {
  /** Sign-up time, RFC 3339. */
  created: string;
  /** E-mail address. */
  email: string;
  /** Full name. */
  fullname: string;
  /** Unique username, the user's id. */
  username: string;
};

/** `react {room, id, emoji, on}`: give (`on: true`) or take back (`on: false`) a reaction. */
export type React = {
  /** One of the six reactions. */
  emoji: Emoji;
  /** The comment's id. */
  id: CommentId;
  /** Give it or take it back. */
  on: boolean;
  /** The room. */
  room: RoomId;
};

/** A comment's reaction counts: emoji -> count, only counts above 0 (`{}` when none). */
export type Reactions = {
  "❤️"?: number;
  "🎉"?: number;
  "👍"?: number;
  "😂"?: number;
  "😢"?: number;
  "😮"?: number;
};

/** `reactions {room, id, reactions}`: a comment's reaction counts changed. */
export type ReactionsChanged = {
  /** The comment's id. */
  id: string;
  /** Its counts now, only those above 0. */
  reactions: Reactions;
  /** The room. */
  room: RoomId;
};

/** A client-chosen request reference, echoed in the reply: a string of at most 128 characters or an integer. */
export type Ref = string | number;

/** A user's role. */
export type Role = "user" | "admin";

/** A room: 1..64 letters, digits, '_' and '-'. */
export type RoomId = string;

/** `unsubscribe {room}`, `typing {room}`, `unsubscribed {room}`. */
export type RoomOnly = {
  /** The room. */
  room: RoomId;
};

/** A server frame: a message and the `ref` of the request it answers. */
export type ServerFrame = {
  /** The request's `ref`. */
  ref?: Ref;
} & ({
  payload: Welcome;
  type: "welcome";
} | {
  payload: Subscribed;
  type: "subscribed";
} | {
  payload: RoomOnly;
  type: "unsubscribed";
} | {
  payload: Ack;
  type: "ack";
} | {
  payload: Comment;
  type: "comment";
} | {
  payload: CommentDeleted;
  type: "comment_deleted";
} | {
  payload: HistoryPage;
  type: "history";
} | {
  payload: Empty;
  type: "pong";
} | {
  payload: Notice;
  type: "notice";
} | {
  payload: ErrorPayload;
  type: "error";
} | {
  payload: CommentEdited;
  type: "comment_edited";
} | {
  payload: ReactionsChanged;
  type: "reactions";
} | {
  payload: Typing;
  type: "typing";
} | {
  payload: Presence;
  type: "presence";
});

/** A message from the server. */
export type ServerMessage = {
  payload: Welcome;
  type: "welcome";
} | {
  payload: Subscribed;
  type: "subscribed";
} | {
  payload: RoomOnly;
  type: "unsubscribed";
} | {
  payload: Ack;
  type: "ack";
} | {
  payload: Comment;
  type: "comment";
} | {
  payload: CommentDeleted;
  type: "comment_deleted";
} | {
  payload: HistoryPage;
  type: "history";
} | {
  payload: Empty;
  type: "pong";
} | {
  payload: Notice;
  type: "notice";
} | {
  payload: ErrorPayload;
  type: "error";
} | {
  payload: CommentEdited;
  type: "comment_edited";
} | {
  payload: ReactionsChanged;
  type: "reactions";
} | {
  payload: Typing;
  type: "typing";
} | {
  payload: Presence;
  type: "presence";
};

/** `POST /api/v1/user/signup` body. */
export type SignupRequest = {
  /** E-mail address. */
  email: string;
  /** Full name. */
  fullname: string;
  /** Password in clear (hashed before storing). */
  password: string;
  /** Wanted username. */
  username: string;
};

/** `subscribe {room, since?, limit?}`. */
export type Subscribe = {
  /** Latest N (1..=200) when `since` is absent. */
  limit?: number | null;
  /** The room. */
  room: RoomId;
  /** Resume after this `seq`. */
  since?: number | null;
};

/** `subscribed {room, comments, truncated, mine?}`. */
export type Subscribed = {
  /** Backlog, oldest first. */
  comments: Comment[];
  /** Signed-in connections only: the user's own reactions to these comments (`{}` when none). */
  mine?: Mine;
  /** The room. */
  room: RoomId;
  /** More exist beyond what was sent. */
  truncated: boolean;
};

/** `{"token": "...", "expiresAt": "..."}` from `GET /api/v1/user/token`. */
export type TokenResponse = {
  /** Expiry, RFC 3339 UTC. */
  expiresAt: string;
  /** HS256 JWT for the gateway. */
  token: string;
};

/** `typing {room, user}`: someone else in the room is typing. */
export type Typing = {
  /** The room. */
  room: RoomId;
  /** Who is typing. */
  user: UserRef;
};

/** `{"user": {...}}`. */
export type UserEnvelope = {
  /** The user. */
  user: PublicUser;
};

/** The connection's user in `welcome`: `{id, name, role}`. */
export type UserInfo = {
  /** Username. */
  id: string;
  /** Full name. */
  name: string;
  /** Role. */
  role: Role;
};

/** A user as presence and typing show them: `{id, name}`. */
export type UserRef = {
  /** Username. */
  id: string;
  /** Full name. */
  name: string;
};

/** A username: 1..32 letters, digits, '_', '-' and '.'. */
export type Username = string;

/** `welcome {connectionId, user, heartbeatMs}`. */
export type Welcome = {
  /** This connection's id. */
  connectionId: string;
  /** How often the server pings. */
  heartbeatMs: number;
  /** The signed-in user, or null when anonymous. */
  user: UserInfo | null;
};

/** Every `type` a client may send. */
export type ClientMessageType = "subscribe" | "unsubscribe" | "post" | "delete" | "history" | "ping" | "edit" | "react" | "typing";

/** Every `type` the server sends. */
export type ServerMessageType = "welcome" | "subscribed" | "unsubscribed" | "ack" | "comment" | "comment_deleted" | "history" | "pong" | "notice" | "error" | "comment_edited" | "reactions" | "typing" | "presence";

/** The frame of one server message type, e.g. `ServerFrameOf<'ack'>`. */
export type ServerFrameOf<T extends ServerMessageType> = Extract<ServerFrame, { type: T }>;

/** The frame of one client message type, e.g. `ClientFrameOf<'post'>`. */
export type ClientFrameOf<T extends ClientMessageType> = Extract<ClientFrame, { type: T }>;
