//! The IKpsk2 message computations, step for step as in the WireGuard paper (section 5.4).

use rand_core::CryptoRngCore;
use warpline_dataplane::aead::{PacketKey, Suite, TAG_LEN};
use warpline_dataplane::wire::wireguard::{INITIATION_LEN, Initiation, RESPONSE_LEN, Response};
use x25519_dalek::{PublicKey as DhPublic, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::primitives::{HASH_LEN, hash, kdf};
use crate::keys::{PresharedKey, PrivateKey, PublicKey};
use crate::tai64n::{TAI64N_LEN, Tai64N};

const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
const LABEL_MAC1: &[u8] = b"mac1----";
const LABEL_COOKIE: &[u8] = b"cookie--";
const SUITES: [Suite; 2] = [Suite::ChaCha20Poly1305, Suite::Aes256Gcm];

/// Why a handshake message was refused. Small and `Copy`: these are counted drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum HandshakeError {
    /// An encrypted field did not authenticate under any suite: not for us, or tampered.
    #[error("handshake message failed to decrypt")]
    DecryptFailed,
    /// The initiator's static key is not a configured peer.
    #[error("initiator is not a configured peer")]
    UnknownPeer,
    /// The peer is configured for another cipher suite than the initiation used.
    #[error("cipher suite does not match the peer's configured suite")]
    SuiteMismatch,
    /// A Diffie-Hellman result was all zeros (a low-order point): refused as WireGuard does.
    #[error("low-order public key")]
    WeakKey,
}

/// The `(chaining key, hash)` pair every handshake starts from for a given responder.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct SymmetricState {
    chaining_key: [u8; HASH_LEN],
    hash: [u8; HASH_LEN],
}

impl SymmetricState {
    fn initial(suite: Suite, responder: &PublicKey) -> Self {
        let chaining_key = hash(&[suite.noise_protocol_name()]);
        let hash_value = hash(&[&hash(&[&chaining_key, IDENTIFIER]), responder.as_bytes()]);
        Self {
            chaining_key,
            hash: hash_value,
        }
    }

    fn mix_hash(&mut self, data: &[u8]) {
        self.hash = hash(&[&self.hash, data]);
    }

    /// `C = KDF1(C, input)`.
    fn mix_chain(&mut self, input: &[u8]) {
        let [chaining_key] = kdf::<1>(&self.chaining_key, input);
        self.chaining_key = chaining_key;
    }

    /// `(C, k) = KDF2(C, input)`: returns the key for the next encrypted field.
    fn mix_key(&mut self, input: &[u8]) -> [u8; HASH_LEN] {
        let [chaining_key, key] = kdf::<2>(&self.chaining_key, input);
        self.chaining_key = chaining_key;
        key
    }

    /// `(C, t, k) = KDF3(C, psk); H = HASH(H || t)`: returns `k`.
    fn mix_psk(&mut self, psk: &PresharedKey) -> [u8; HASH_LEN] {
        let [chaining_key, mut tau, key] = kdf::<3>(&self.chaining_key, psk.as_bytes());
        self.chaining_key = chaining_key;
        self.mix_hash(&tau);
        tau.zeroize();
        key
    }

    /// Encrypts `plaintext` into `out` (plaintext + tag) with the hash as associated data.
    fn seal(&mut self, suite: Suite, mut key: [u8; HASH_LEN], plaintext: &[u8], out: &mut [u8]) {
        out[..plaintext.len()].copy_from_slice(plaintext);
        PacketKey::new(suite, &key)
            .seal_in_place(0, &self.hash, out, plaintext.len())
            .expect("callers size `out` as plaintext + tag");
        key.zeroize();
        self.mix_hash(out);
    }

    /// Decrypts `ciphertext` into `out`; mixes the ciphertext into the hash on success only.
    fn open(
        &mut self,
        suite: Suite,
        mut key: [u8; HASH_LEN],
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<(), HandshakeError> {
        let mut buf = [0u8; 64];
        let buf = &mut buf[..ciphertext.len()];
        buf.copy_from_slice(ciphertext);
        let result = PacketKey::new(suite, &key).open_in_place(0, &self.hash, buf);
        key.zeroize();
        let len = result.map_err(|_| HandshakeError::DecryptFailed)?;
        out.copy_from_slice(&buf[..len]);
        buf.zeroize();
        self.mix_hash(ciphertext);
        Ok(())
    }
}

fn diffie_hellman(secret: &StaticSecret, public: &[u8; 32]) -> Result<[u8; 32], HandshakeError> {
    let shared = secret.diffie_hellman(&DhPublic::from(*public));
    if shared.was_contributory() {
        Ok(shared.to_bytes())
    } else {
        Err(HandshakeError::WeakKey)
    }
}

/// This node's static identity, with everything derived from it precomputed.
pub struct LocalStatic {
    secret: StaticSecret,
    public: PublicKey,
    mac1_key: [u8; HASH_LEN],
    cookie_key: [u8; HASH_LEN],
    initial_as_responder: [SymmetricState; 2],
}

impl std::fmt::Debug for LocalStatic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStatic")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl LocalStatic {
    /// Precomputes the identity's derived keys.
    pub fn new(private: &PrivateKey) -> Self {
        let public = private.public_key();
        Self {
            secret: StaticSecret::from(*private.as_bytes()),
            mac1_key: hash(&[LABEL_MAC1, public.as_bytes()]),
            cookie_key: hash(&[LABEL_COOKIE, public.as_bytes()]),
            initial_as_responder: SUITES.map(|suite| SymmetricState::initial(suite, &public)),
            public,
        }
    }

    /// The public key peers know this node by.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// `HASH(LABEL_MAC1 || our public key)`: the key that MAC1 of messages to us uses.
    pub fn mac1_key(&self) -> &[u8; HASH_LEN] {
        &self.mac1_key
    }

    /// `HASH(LABEL_COOKIE || our public key)`: the key our cookie replies are sealed with.
    pub fn cookie_key(&self) -> &[u8; HASH_LEN] {
        &self.cookie_key
    }
}

/// A peer's static identity as seen from this node, with the static-static DH precomputed.
pub struct RemoteStatic {
    public: PublicKey,
    static_static: [u8; 32],
    psk: PresharedKey,
    suite: Suite,
    mac1_key: [u8; HASH_LEN],
    cookie_key: [u8; HASH_LEN],
    initial_as_initiator: SymmetricState,
}

impl std::fmt::Debug for RemoteStatic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStatic")
            .field("public", &self.public)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl Drop for RemoteStatic {
    fn drop(&mut self) {
        self.static_static.zeroize();
    }
}

impl RemoteStatic {
    /// Derives what handshakes with `public` need. Fails for a low-order public key.
    pub fn new(
        local: &LocalStatic,
        public: PublicKey,
        psk: PresharedKey,
        suite: Suite,
    ) -> Result<Self, HandshakeError> {
        Ok(Self {
            static_static: diffie_hellman(&local.secret, public.as_bytes())?,
            psk,
            suite,
            mac1_key: hash(&[LABEL_MAC1, public.as_bytes()]),
            cookie_key: hash(&[LABEL_COOKIE, public.as_bytes()]),
            initial_as_initiator: SymmetricState::initial(suite, &public),
            public,
        })
    }

    /// The peer's public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The suite configured for this peer.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Whether `psk` is this peer's preshared key (constant time).
    pub fn has_preshared_key(&self, psk: &PresharedKey) -> bool {
        self.psk == *psk
    }

    /// Replaces the preshared key for the handshakes to come. Nothing precomputed depends on
    /// it (IKpsk2 mixes it in at the end), and sessions already made keep their keys.
    pub fn set_preshared_key(&mut self, psk: PresharedKey) {
        self.psk = psk;
    }

    /// The key for MAC1 of messages we send to this peer.
    pub fn mac1_key(&self) -> &[u8; HASH_LEN] {
        &self.mac1_key
    }

    /// The key this peer seals its cookie replies to us with.
    pub fn cookie_key(&self) -> &[u8; HASH_LEN] {
        &self.cookie_key
    }
}

/// Transport keys and indices produced by a completed handshake. Zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    /// Index we chose; the peer puts it in every message it sends us.
    pub local_index: u32,
    /// Index the peer chose; we put it in every message we send.
    pub remote_index: u32,
    /// Key for what we send.
    pub send: [u8; 32],
    /// Key for what we receive.
    pub recv: [u8; 32],
    /// True when this node sent the initiation.
    pub we_initiated: bool,
    /// The suite both sides agreed on.
    #[zeroize(skip)]
    pub suite: Suite,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("we_initiated", &self.we_initiated)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// What the initiator keeps between sending an initiation and receiving the response.
#[derive(ZeroizeOnDrop)]
pub struct InitiationState {
    symmetric: SymmetricState,
    ephemeral: StaticSecret,
    #[zeroize(skip)]
    local_index: u32,
}

impl std::fmt::Debug for InitiationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitiationState")
            .field("local_index", &self.local_index)
            .finish_non_exhaustive()
    }
}

impl InitiationState {
    /// The sender index the initiation carried; the response names it as receiver.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }
}

/// Builds a handshake initiation to `remote`. MAC1 and MAC2 are left zero for the cookie
/// layer to fill in.
pub fn create_initiation(
    local: &LocalStatic,
    remote: &RemoteStatic,
    local_index: u32,
    timestamp: Tai64N,
    rng: &mut impl CryptoRngCore,
) -> Result<([u8; INITIATION_LEN], InitiationState), HandshakeError> {
    let mut bytes = [0u8; INITIATION_LEN];
    let mut message = Initiation::new_zeroed(&mut bytes[..]).expect("exact size");
    message.set_sender_index(local_index);
    let mut symmetric = remote.initial_as_initiator.clone();
    let ephemeral = StaticSecret::random_from_rng(rng);
    let ephemeral_public = DhPublic::from(&ephemeral).to_bytes();
    *message.unencrypted_ephemeral_mut() = ephemeral_public;
    symmetric.mix_hash(&ephemeral_public);
    symmetric.mix_chain(&ephemeral_public);
    let mut shared = diffie_hellman(&ephemeral, remote.public.as_bytes())?;
    let key = symmetric.mix_key(&shared);
    shared.zeroize();
    symmetric.seal(
        remote.suite,
        key,
        local.public.as_bytes(),
        message.encrypted_static_mut(),
    );
    let key = symmetric.mix_key(&remote.static_static);
    symmetric.seal(
        remote.suite,
        key,
        &timestamp.to_bytes(),
        message.encrypted_timestamp_mut(),
    );
    let state = InitiationState {
        symmetric,
        ephemeral,
        local_index,
    };
    Ok((bytes, state))
}

/// What a responder learned from a valid initiation, before it decides to answer.
#[derive(ZeroizeOnDrop)]
pub struct ReceivedInitiation {
    symmetric: SymmetricState,
    remote_ephemeral: [u8; 32],
    /// The initiator's static key (already matched to a configured peer).
    #[zeroize(skip)]
    pub peer: PublicKey,
    /// The initiator's sender index.
    #[zeroize(skip)]
    pub remote_index: u32,
    /// The initiation's timestamp: the caller rejects it unless newer than the last one.
    #[zeroize(skip)]
    pub timestamp: Tai64N,
    /// The suite the initiation was made under.
    #[zeroize(skip)]
    pub suite: Suite,
}

impl std::fmt::Debug for ReceivedInitiation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedInitiation")
            .field("peer", &self.peer)
            .field("remote_index", &self.remote_index)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// Decrypts an initiation (whose MAC1 the caller has already verified), identifies the peer
/// through `find_peer`, and checks the peer's suite. Tries ChaCha20-Poly1305 first, then the
/// AES-256-GCM protocol name, reusing the one ephemeral-static DH.
pub fn consume_initiation<'p>(
    local: &LocalStatic,
    message: &Initiation<&[u8]>,
    mut find_peer: impl FnMut(&PublicKey) -> Option<&'p RemoteStatic>,
) -> Result<ReceivedInitiation, HandshakeError> {
    let remote_ephemeral = *message.unencrypted_ephemeral();
    let mut shared = diffie_hellman(&local.secret, &remote_ephemeral)?;
    let mut found = None;
    for (suite, initial) in SUITES.iter().zip(&local.initial_as_responder) {
        let mut symmetric = initial.clone();
        symmetric.mix_hash(&remote_ephemeral);
        symmetric.mix_chain(&remote_ephemeral);
        let key = symmetric.mix_key(&shared);
        let mut static_key = [0u8; 32];
        if symmetric
            .open(*suite, key, message.encrypted_static(), &mut static_key)
            .is_ok()
        {
            found = Some((*suite, symmetric, PublicKey(static_key)));
            break;
        }
    }
    shared.zeroize();
    let (suite, mut symmetric, peer_key) = found.ok_or(HandshakeError::DecryptFailed)?;
    let remote = find_peer(&peer_key).ok_or(HandshakeError::UnknownPeer)?;
    if remote.suite != suite {
        return Err(HandshakeError::SuiteMismatch);
    }
    let key = symmetric.mix_key(&remote.static_static);
    let mut timestamp = [0u8; TAI64N_LEN];
    symmetric.open(suite, key, message.encrypted_timestamp(), &mut timestamp)?;
    Ok(ReceivedInitiation {
        symmetric,
        remote_ephemeral,
        peer: peer_key,
        remote_index: message.sender_index(),
        timestamp: Tai64N::from_bytes(&timestamp),
        suite,
    })
}

/// Answers a consumed initiation. MACs are left zero for the cookie layer.
pub fn create_response(
    remote: &RemoteStatic,
    received: ReceivedInitiation,
    local_index: u32,
    rng: &mut impl CryptoRngCore,
) -> Result<([u8; RESPONSE_LEN], SessionKeys), HandshakeError> {
    let mut bytes = [0u8; RESPONSE_LEN];
    let mut message = Response::new_zeroed(&mut bytes[..]).expect("exact size");
    message.set_sender_index(local_index);
    message.set_receiver_index(received.remote_index);
    let mut symmetric = received.symmetric.clone();
    let ephemeral = StaticSecret::random_from_rng(rng);
    let ephemeral_public = DhPublic::from(&ephemeral).to_bytes();
    *message.unencrypted_ephemeral_mut() = ephemeral_public;
    symmetric.mix_hash(&ephemeral_public);
    symmetric.mix_chain(&ephemeral_public);
    let mut shared = diffie_hellman(&ephemeral, &received.remote_ephemeral)?;
    symmetric.mix_chain(&shared);
    shared = diffie_hellman(&ephemeral, remote.public.as_bytes())?;
    symmetric.mix_chain(&shared);
    shared.zeroize();
    let key = symmetric.mix_psk(&remote.psk);
    symmetric.seal(received.suite, key, &[], message.encrypted_nothing_mut());
    let [recv, send] = kdf::<2>(&symmetric.chaining_key, &[]);
    let keys = SessionKeys {
        local_index,
        remote_index: received.remote_index,
        send,
        recv,
        we_initiated: false,
        suite: received.suite,
    };
    Ok((bytes, keys))
}

/// Completes the handshake on the initiator's side. The caller has matched the response's
/// receiver index to `state` and verified MAC1.
pub fn consume_response(
    local: &LocalStatic,
    remote: &RemoteStatic,
    state: &InitiationState,
    message: &Response<&[u8]>,
) -> Result<SessionKeys, HandshakeError> {
    let mut symmetric = state.symmetric.clone();
    let remote_ephemeral = *message.unencrypted_ephemeral();
    symmetric.mix_hash(&remote_ephemeral);
    symmetric.mix_chain(&remote_ephemeral);
    let mut shared = diffie_hellman(&state.ephemeral, &remote_ephemeral)?;
    symmetric.mix_chain(&shared);
    shared = diffie_hellman(&local.secret, &remote_ephemeral)?;
    symmetric.mix_chain(&shared);
    shared.zeroize();
    let key = symmetric.mix_psk(&remote.psk);
    let mut nothing = [0u8; 0];
    symmetric.open(remote.suite, key, message.encrypted_nothing(), &mut nothing)?;
    let [send, recv] = kdf::<2>(&symmetric.chaining_key, &[]);
    Ok(SessionKeys {
        local_index: state.local_index,
        remote_index: message.sender_index(),
        send,
        recv,
        we_initiated: true,
        suite: remote.suite,
    })
}

/// Length check the compiler cannot see: the encrypted fields are plaintext + tag.
const _: () = assert!(48 == 32 + TAG_LEN && 28 == TAI64N_LEN + TAG_LEN);

#[cfg(test)]
mod tests;
