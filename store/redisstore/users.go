package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sortie-dev/sortie/store"
	"github.com/sortie-dev/sortie/store/internal/record"
)

// Users keys: every user record and both indexes share the hash tag {users}, so creating a
// user (the id and login checks with the insert) is one script on one node. Users are few.
const (
	keyUserIDs    = "sortie:{users}:ids"    // hash user id -> organization id
	keyUserLogins = "sortie:{users}:logins" // hash login -> user id
)

// usersKey names the hash of orgID's users (user id -> user).
func usersKey(orgID string) string { return "sortie:{users}:org:" + url.PathEscape(orgID) }

// ticketKey names the hash of one ticket (fields value, expires and exp_ms, the key expiring
// with the ticket) and ticketIndexKey the kind's sorted set of ids scored by expiry in
// milliseconds. Both carry the kind's hash tag.
func ticketKey(kind, id string) string {
	return "sortie:{tkt:" + url.PathEscape(kind) + "}:ticket:" + url.PathEscape(id)
}

func ticketIndexKey(kind string) string {
	return "sortie:{tkt:" + url.PathEscape(kind) + "}:index"
}

// createUserScript stores a user unless its id or its login is taken.
// KEYS: 1 ids, 2 logins, 3 the organization's users. ARGV: 1 id, 2 org, 3 login, 4 record.
const createUserScript = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'id' end
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then return 'login' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
return 'ok'
`

// updateUserScript replaces a user's record if it is still the one the caller read.
// KEYS: 1 the organization's users. ARGV: 1 id, 2 the record as read, 3 the new record.
const updateUserScript = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 'not_found' end
if cur ~= ARGV[2] then return 'stale' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 'ok'
`

// deleteUserScript removes a user at the given revision and frees its id and login.
// KEYS: 1 ids, 2 logins, 3 the organization's users. ARGV: 1 id, 2 revision.
const deleteUserScript = `
local cur = redis.call('HGET', KEYS[3], ARGV[1])
if not cur then return 'not_found' end
local rec = cjson.decode(cur)
if rec.revision ~= tonumber(ARGV[2]) then return 'stale' end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], rec.login) == ARGV[1] then redis.call('HDEL', KEYS[2], rec.login) end
return 'ok'
`

// putTicketScript stores a ticket unless a live one has its id, and drops the index entries
// of expired tickets. Live is judged by the caller's clock (the exp_ms field), as every read
// does, so a ticket this process sees expired never blocks its id while Redis's clock lags.
// KEYS: 1 ticket, 2 index. ARGV: 1 id, 2 value, 3 expires (as stored), 4 expiry ms, 5 now ms.
const putTicketScript = `
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
local cur = redis.call('HGET', KEYS[1], 'exp_ms')
if cur and tonumber(cur) > tonumber(ARGV[5]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'value', ARGV[2], 'expires', ARGV[3], 'exp_ms', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
`

// swapTicketScript replaces a live ticket's value if it still holds old; HSET keeps the key's
// expiry. KEYS: 1 ticket. ARGV: 1 old, 2 new.
const swapTicketScript = `
local v = redis.call('HGET', KEYS[1], 'value')
if not v then return 'not_found' end
if v ~= ARGV[1] then return 'stale' end
redis.call('HSET', KEYS[1], 'value', ARGV[2])
return 'ok'
`

// takeTicketScript returns a live ticket's value and expiry and deletes it.
// KEYS: 1 ticket, 2 index. ARGV: 1 id.
const takeTicketScript = `
local t = redis.call('HMGET', KEYS[1], 'value', 'expires')
if not t[1] then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return t
`

var (
	createUser = redis.NewScript(createUserScript)
	updateUser = redis.NewScript(updateUserScript)
	deleteUser = redis.NewScript(deleteUserScript)
	putTicket  = redis.NewScript(putTicketScript)
	swapTicket = redis.NewScript(swapTicketScript)
	takeTicket = redis.NewScript(takeTicketScript)
)

// CreateUser implements store.Users.
func (s *Store) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	op := "create user " + u.ID
	u.Revision = 1
	v, err := record.EncodeUser(u)
	if err != nil {
		return store.User{}, wrap(op, err)
	}
	res, err := createUser.Run(ctx, s.rdb, []string{keyUserIDs, keyUserLogins, usersKey(u.OrgID)}, u.ID, u.OrgID, u.Login, v).Text()
	if err != nil {
		return store.User{}, wrap(op, err)
	}
	switch res {
	case "ok":
		u, err := record.DecodeUser(v)
		return u, wrap(op, err)
	case "id":
		return store.User{}, wrap(op, store.ErrConflict)
	case "login":
		return store.User{}, wrap(op, fmt.Errorf("login: %w", store.ErrConflict))
	}
	return store.User{}, wrap(op, fmt.Errorf("unexpected script reply %q", res))
}

// getUser reads one user of orgID and also returns its stored form.
func (s *Store) getUser(ctx context.Context, orgID, id string) (store.User, string, error) {
	v, err := s.rdb.HGet(ctx, usersKey(orgID), id).Result()
	if err != nil {
		return store.User{}, "", err
	}
	u, err := record.DecodeUser([]byte(v))
	if err != nil {
		return store.User{}, "", err
	}
	if u.OrgID != orgID || u.ID != id {
		return store.User{}, "", fmt.Errorf("stored as %s/%s but is %s/%s", orgID, id, u.OrgID, u.ID)
	}
	return u, v, nil
}

// GetUser implements store.Users.
func (s *Store) GetUser(ctx context.Context, orgID, id string) (store.User, error) {
	u, _, err := s.getUser(ctx, orgID, id)
	return u, wrap("get user "+id, err)
}

// LookupUser implements store.Users.
func (s *Store) LookupUser(ctx context.Context, login string) (store.User, error) {
	const op = "look up user by login"
	id, err := s.rdb.HGet(ctx, keyUserLogins, login).Result()
	if err != nil {
		return store.User{}, wrap(op, err)
	}
	orgID, err := s.rdb.HGet(ctx, keyUserIDs, id).Result()
	if err != nil {
		return store.User{}, wrap(op, err)
	}
	u, _, err := s.getUser(ctx, orgID, id)
	return u, wrap(op, err)
}

// ListUsers implements store.Users.
func (s *Store) ListUsers(ctx context.Context, orgID string) ([]store.User, error) {
	op := "list users of " + orgID
	vs, err := s.rdb.HVals(ctx, usersKey(orgID)).Result()
	if err != nil {
		return nil, wrap(op, err)
	}
	var users []store.User
	for _, v := range vs {
		u, err := record.DecodeUser([]byte(v))
		if err != nil {
			return nil, wrap(op, err)
		}
		users = append(users, u)
	}
	record.SortUsers(users)
	return users, nil
}

// UpdateUser implements store.Users: it reads the user, checks the revision and writes the
// new record only if the stored one is still the one it read.
func (s *Store) UpdateUser(ctx context.Context, u store.User) (store.User, error) {
	op := "update user " + u.ID
	if err := record.CheckUserUpdate(u); err != nil {
		return store.User{}, wrap(op, err)
	}
	old, oldV, err := s.getUser(ctx, u.OrgID, u.ID)
	if err != nil {
		return store.User{}, wrap(op, err)
	}
	if old.Revision != u.Revision {
		return store.User{}, wrap(op, fmt.Errorf("revision %d is not the stored %d: %w", u.Revision, old.Revision, store.ErrStale))
	}
	v, err := record.EncodeUser(record.UpdatedUser(old, u))
	if err != nil {
		return store.User{}, wrap(op, err)
	}
	res, err := updateUser.Run(ctx, s.rdb, []string{usersKey(u.OrgID)}, u.ID, oldV, v).Text()
	if err != nil {
		return store.User{}, wrap(op, err)
	}
	switch res {
	case "ok":
		nu, err := record.DecodeUser(v)
		return nu, wrap(op, err)
	case "not_found":
		return store.User{}, wrap(op, store.ErrNotFound)
	case "stale":
		return store.User{}, wrap(op, fmt.Errorf("changed since revision %d: %w", u.Revision, store.ErrStale))
	}
	return store.User{}, wrap(op, fmt.Errorf("unexpected script reply %q", res))
}

// DeleteUser implements store.Users.
func (s *Store) DeleteUser(ctx context.Context, orgID, id string, revision int64) error {
	op := "delete user " + id
	res, err := deleteUser.Run(ctx, s.rdb, []string{keyUserIDs, keyUserLogins, usersKey(orgID)}, id, strconv.FormatInt(revision, 10)).Text()
	if err != nil {
		return wrap(op, err)
	}
	switch res {
	case "ok":
		return nil
	case "not_found":
		return wrap(op, store.ErrNotFound)
	case "stale":
		return wrap(op, fmt.Errorf("changed since revision %d: %w", revision, store.ErrStale))
	}
	return wrap(op, fmt.Errorf("unexpected script reply %q", res))
}

// decodeTicket builds a ticket from its value and stored expiry; an expired one (by this
// process's clock, which may run ahead of Redis's) is ErrNotFound.
func decodeTicket(kind, id, value, expires string, now time.Time) (store.Ticket, error) {
	exp, err := time.Parse(time.RFC3339Nano, expires)
	if err != nil {
		return store.Ticket{}, fmt.Errorf("stored expiry: %w", err)
	}
	if !exp.After(now) {
		return store.Ticket{}, store.ErrNotFound
	}
	return store.Ticket{Kind: kind, ID: id, Value: []byte(value), ExpiresAt: exp}, nil
}

// PutTicket implements store.Tickets. The key expires with the ticket (PEXPIREAT), so an
// expired ticket is missing to Redis itself and a new one may take its id.
func (s *Store) PutTicket(ctx context.Context, t store.Ticket) error {
	op := "put " + t.Kind + " ticket"
	now := time.Now()
	if err := record.CheckTicket(t, now); err != nil {
		return wrap(op, err)
	}
	keys := []string{ticketKey(t.Kind, t.ID), ticketIndexKey(t.Kind)}
	stored, err := putTicket.Run(ctx, s.rdb, keys, t.ID, t.Value, t.ExpiresAt.UTC().Format(time.RFC3339Nano),
		t.ExpiresAt.UnixMilli(), now.UnixMilli()).Bool()
	if err != nil {
		return wrap(op, err)
	}
	if !stored {
		return wrap(op, store.ErrConflict)
	}
	return nil
}

// GetTicket implements store.Tickets.
func (s *Store) GetTicket(ctx context.Context, kind, id string) (store.Ticket, error) {
	op := "get " + kind + " ticket"
	vs, err := s.rdb.HMGet(ctx, ticketKey(kind, id), "value", "expires").Result()
	if err != nil {
		return store.Ticket{}, wrap(op, err)
	}
	value, ok1 := vs[0].(string)
	expires, ok2 := vs[1].(string)
	if !ok1 || !ok2 {
		return store.Ticket{}, wrap(op, store.ErrNotFound)
	}
	t, err := decodeTicket(kind, id, value, expires, time.Now())
	return t, wrap(op, err)
}

// SwapTicket implements store.Tickets.
func (s *Store) SwapTicket(ctx context.Context, kind, id string, old, value []byte) error {
	op := "swap " + kind + " ticket"
	// A ticket Redis still holds but this process's clock has expired is gone, as for reads.
	if _, err := s.GetTicket(ctx, kind, id); err != nil {
		return err
	}
	res, err := swapTicket.Run(ctx, s.rdb, []string{ticketKey(kind, id)}, old, value).Text()
	if err != nil {
		return wrap(op, err)
	}
	switch res {
	case "ok":
		return nil
	case "not_found":
		return wrap(op, store.ErrNotFound)
	case "stale":
		return wrap(op, fmt.Errorf("value changed: %w", store.ErrStale))
	}
	return wrap(op, fmt.Errorf("unexpected script reply %q", res))
}

// TakeTicket implements store.Tickets with one script, so of concurrent takers exactly one
// finds the ticket.
func (s *Store) TakeTicket(ctx context.Context, kind, id string) (store.Ticket, error) {
	op := "take " + kind + " ticket"
	res, err := takeTicket.Run(ctx, s.rdb, []string{ticketKey(kind, id), ticketIndexKey(kind)}, id).StringSlice()
	if err != nil {
		return store.Ticket{}, wrap(op, err)
	}
	if len(res) != 2 {
		return store.Ticket{}, wrap(op, errors.New("unexpected script reply"))
	}
	t, err := decodeTicket(kind, id, res[0], res[1], time.Now())
	return t, wrap(op, err)
}

// DeleteTicket implements store.Tickets.
func (s *Store) DeleteTicket(ctx context.Context, kind, id string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, ticketKey(kind, id))
		p.ZRem(ctx, ticketIndexKey(kind), id)
		return nil
	})
	return wrap("delete "+kind+" ticket", err)
}

// ListTickets implements store.Tickets: the kind's index names the live ids, and one
// pipeline on the kind's node reads them; a ticket gone in between is left out.
func (s *Store) ListTickets(ctx context.Context, kind, prefix string) ([]store.Ticket, error) {
	op := "list " + kind + " tickets"
	now := time.Now()
	ids, err := s.rdb.ZRangeByScore(ctx, ticketIndexKey(kind), &redis.ZRangeBy{
		Min: "(" + fmt.Sprint(now.UnixMilli()), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, wrap(op, err)
	}
	ids = slices.DeleteFunc(ids, func(id string) bool { return !strings.HasPrefix(id, prefix) })
	if len(ids) == 0 {
		return nil, nil
	}
	slices.Sort(ids)
	cmds := make([]*redis.SliceCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, ticketKey(kind, id), "value", "expires")
		}
		return nil
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	var tickets []store.Ticket
	for i, cmd := range cmds {
		vs := cmd.Val()
		value, ok1 := vs[0].(string)
		expires, ok2 := vs[1].(string)
		if !ok1 || !ok2 {
			continue
		}
		t, err := decodeTicket(kind, ids[i], value, expires, now)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, wrap(op, err)
		}
		tickets = append(tickets, t)
	}
	return tickets, nil
}
